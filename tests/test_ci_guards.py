"""CI's guards: the notebooks and the generated library must agree, and the docs must build.

Each way of breaking the notebook<->library sync is applied to a scratch copy of this repository, committed as a
developer would push it, and `.ci/check-sync` (what CI runs through this file) must fail and name the file and rule.
"""
import json, os, shutil, subprocess, sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def git(cwd, *args):
    return subprocess.run(['git', *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def scratch_copy(dest: Path) -> Path:
    "The work tree as it is now (committed or not, ignored files left out), committed in a new repo at `dest`."
    files = git(REPO, 'ls-files', '-z', '--cached', '--others', '--exclude-standard').split('\0')
    for f in filter(None, files):
        src = REPO/f
        if not src.is_file(): continue  # deleted but not yet committed
        (dest/f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest/f)
    git(dest, 'init', '-q'); commit(dest, 'copy')
    return dest


def commit(repo, msg):
    git(repo, 'add', '-A')
    git(repo, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', msg, '--allow-empty')


def check_sync(repo):
    env = {**os.environ, 'NBDEV_BIN': str(BIN), 'PATH': f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run(['bash', str(repo/'.ci'/'check-sync'), str(repo)], capture_output=True, text=True, env=env, timeout=300)


def edit_nb(path: Path, fn):
    nb = json.loads(path.read_text()); fn(nb)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + '\n')


def cell_with(nb, text):
    return next(c for c in nb['cells'] if text in ''.join(c['source']))


@pytest.fixture(scope='module')
def pristine(tmp_path_factory):
    return scratch_copy(tmp_path_factory.mktemp('pristine'))


@pytest.fixture
def repo(pristine, tmp_path):
    dest = tmp_path/'repo'
    shutil.copytree(pristine, dest, symlinks=True)
    return dest


def test_this_repository_is_in_sync(pristine):
    "The guard itself, on the repository as it stands: nbdev-clean and nbdev-export change nothing."
    r = check_sync(pristine)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'in sync' in r.stdout


def test_unexported_notebook_edit_fails(repo):
    def bump(nb):
        c = cell_with(nb, 'class MlopsNbError')
        c['source'] = [l.replace('exit_code = 1 ', 'exit_code = 9 ') for l in c['source']]
    edit_nb(repo/'nbs'/'00_errors.ipynb', bump)
    commit(repo, 'edit without export')
    r = check_sync(repo)
    assert r.returncode == 1
    assert 'mlops_nb/errors.py' in r.stdout and 'differs from its notebook' in r.stdout


def test_hand_edit_of_a_generated_module_fails(repo):
    with open(repo/'mlops_nb'/'config.py', 'a') as f: f.write('\nHOTFIX = True\n')
    commit(repo, 'hand edit')
    r = check_sync(repo)
    assert r.returncode == 1 and 'mlops_nb/config.py' in r.stdout and 'hand edit' in r.stdout


def test_renamed_default_exp_leaving_a_stale_module_fails(repo):
    def rename(nb):
        c = cell_with(nb, 'default_exp quickstart')
        c['source'] = ['#| default_exp demo']
    edit_nb(repo/'nbs'/'03_quickstart.ipynb', rename)
    env = {**os.environ, 'PATH': f"{BIN}:{os.environ['PATH']}"}
    subprocess.run([str(BIN/'nbdev-export')], cwd=repo, check=True, env=env)  # the developer did export...
    assert (repo/'mlops_nb'/'demo.py').exists() and (repo/'mlops_nb'/'quickstart.py').exists()
    commit(repo, 'rename module')  # ...and committed the stale quickstart.py along with demo.py
    r = check_sync(repo)
    assert r.returncode == 1
    assert 'mlops_nb/quickstart.py' in r.stdout and 'has no notebook any more' in r.stdout


def test_notebook_saved_with_execution_counts_fails(repo):
    def run_it(nb):
        c = cell_with(nb, 'def find_project_dir')
        c['execution_count'] = 7
        nb['metadata']['language_info'] = {'name': 'python', 'version': '3.11.7'}
    edit_nb(repo/'nbs'/'01_config.ipynb', run_it)
    commit(repo, 'saved after running')
    r = check_sync(repo)
    assert r.returncode == 1 and 'nbs/01_config.ipynb' in r.stdout and 'not clean' in r.stdout


def test_guard_refuses_a_dirty_tree(repo):
    (repo/'nbs'/'scratch.ipynb').write_text('{}')
    r = check_sync(repo)
    assert r.returncode == 2 and 'uncommitted' in r.stdout


def test_docs_build_offline_from_the_notebooks(tmp_path):
    out = tmp_path/'site'
    r = subprocess.run([sys.executable, str(REPO/'docs'/'build.py'), '--out', str(out)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    pages = {p.name for p in out.glob('*.html')}
    assert {'index.html', 'errors.html', 'config.html', 'store.html', 'quickstart.html', 'cli.html', 'cli_reference.html'} <= pages
    config = (out/'config.html').read_text()
    assert 'resolve_settings' in config and 'Can the store be reached?' in config and '#| export' not in config and 'nbdev_export' not in config
    assert 'mlops-nb quickstart' in (out/'cli_reference.html').read_text()


def test_docs_build_fails_on_a_broken_example(repo):
    def breaks(nb): cell_with(nb, 'e = MlopsNbError(')['source'].append('\n1/0')
    edit_nb(repo/'nbs'/'00_errors.ipynb', breaks)
    r = subprocess.run([sys.executable, str(repo/'docs'/'build.py'), '--out', str(repo/'site')], capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and 'nbs/00_errors.ipynb failed' in r.stderr and 'ZeroDivisionError' in r.stderr
