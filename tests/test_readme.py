"""The README's promise: a first screen with exactly two copy-paste commands, the ones CI runs."""
import re, subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO/'README.md').read_text()


def readme_command(name):
    "What .ci/run extracts and runs for `name`, using .ci/run's own function."
    script = f'source <(sed -n "/^readme_command()/,/^}}/p" .ci/run); readme_command {name}'
    return subprocess.run(['bash', '-c', script], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.integration
def test_first_screen_has_exactly_two_commands():
    first_screen = '\n'.join(README.splitlines()[:25])
    blocks = re.findall(r'```sh\n(.*?)```', first_screen, flags=re.S)
    assert len(blocks) == 2 and all(len(b.strip().splitlines()) == 1 for b in blocks)
    assert [b.strip() for b in blocks] == [readme_command('main-job'), readme_command('tests')]


@pytest.mark.integration
def test_main_job_installs_and_runs_quickstart_and_tests_install_and_run_pytest():
    main, tests = readme_command('main-job'), readme_command('tests')
    assert 'pip install -e ".[train]"' in main and main.endswith('mlops-nb quickstart')
    assert 'pip install -e ".[dev]"' in tests and re.search(r' -m pytest( -n \d+)?$', tests)
    for cmd in (main, tests): assert cmd.startswith('python3 -m venv .venv')


def test_ci_runs_both_readme_commands_with_tests_last():
    ci = (REPO/'.ci'/'run').read_text()
    assert 'readme_command main-job' in ci and 'readme_command tests' in ci
    assert ci.rstrip().splitlines()[-1] == 'bash -c "$tests"'
