"""CI's guards: the notebooks and the generated library must agree, and the docs must build.

Each way of breaking the notebook<->library sync is applied to a scratch copy of this repository, committed as a
developer would push it, and `.ci/check-sync` (what CI runs through this file) must fail and name the file and rule.
"""
import json, os, re, shutil, subprocess, sys
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


def nb_file(repo, stem):
    "The notebook `*_STEM.ipynb` wherever its layer folder puts it."
    return next((repo/'nbs').rglob(f'*_{stem}.ipynb'))


def lib_file(repo, stem):
    "The generated module `STEM.py`, as a path relative to `repo` (what the guards print)."
    return str(next((repo/'mlops_nb').rglob(f'{stem}.py')).relative_to(repo))


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
    edit_nb(nb_file(repo, 'errors'), bump)
    commit(repo, 'edit without export')
    r = check_sync(repo)
    assert r.returncode == 1
    assert lib_file(repo, 'errors') in r.stdout and 'differs from its notebook' in r.stdout


def test_hand_edit_of_a_generated_module_fails(repo):
    with open(repo/lib_file(repo, 'config'), 'a') as f: f.write('\nHOTFIX = True\n')
    commit(repo, 'hand edit')
    r = check_sync(repo)
    assert r.returncode == 1 and lib_file(repo, 'config') in r.stdout and 'hand edit' in r.stdout


def test_renamed_default_exp_leaving_a_stale_module_fails(repo):
    def rename(nb):
        c = cell_with(nb, 'default_exp quickstart')
        c['source'] = ['#| default_exp demo']
    edit_nb(nb_file(repo, 'quickstart'), rename)
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
    edit_nb(nb_file(repo, 'config'), run_it)
    commit(repo, 'saved after running')
    r = check_sync(repo)
    assert r.returncode == 1 and str(nb_file(repo, 'config').relative_to(repo)) in r.stdout and 'not clean' in r.stdout


def test_guard_refuses_a_dirty_tree(repo):
    (repo/'nbs'/'scratch.ipynb').write_text('{}')
    r = check_sync(repo)
    assert r.returncode == 2 and 'uncommitted' in r.stdout


def readme_command(name):
    "The shell command of README's `<!-- readme-command: NAME -->` block, as CI runs it."
    text = (REPO/'README.md').read_text()
    return text.split(f'<!-- readme-command: {name} -->', 1)[1].split('```', 2)[1].split('\n', 1)[1].strip()


def test_docs_build_offline_from_the_notebooks(repo):
    "The whole site, with the tutorial executed in a real kernel (its outputs are checked below); the API notebooks are"
    "rendered as saved (each is executed by its own `nbdev-test` in tests/test_notebooks.py): a broken example in one of"
    "them is rendered, not run, since only the tutorial was asked for. A broken example failing a build that executes it"
    "is test_docs_build_fails_on_a_broken_example. (One build checks both: rendering the site is the costly part.)"
    def breaks(nb): cell_with(nb, 'e = MlopsNbError(')['source'].append('\n1/0')
    edit_nb(nb_file(repo, 'errors'), breaks)
    out = repo/'site'
    r = subprocess.run([sys.executable, str(repo/'docs'/'build.py'), '--out', str(out), '--execute', 'tutorial.ipynb'],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    pages = {p.name for p in out.glob('*.html')}
    assert {'index.html', 'errors.html', 'config.html', 'client.html', 'quickstart.html', 'cli.html', 'cli_reference.html'} <= pages
    config = (out/'config.html').read_text()
    assert 'resolve_settings' in config and 'Can the store be reached?' in config and '#| export' not in config and 'nbdev_export' not in config
    # The CLI reference is every command's --help.
    ref = (out/'cli_reference.html').read_text()
    assert all(f'<code>mlops-nb {c}</code>' in ref for c in ('quickstart', 'run', 'sweep', 'drift', 'quota', 'reproduce'))
    assert 'Exit codes' in ref and '--force-quota' in ref
    # Getting started gives the README's two commands, exactly as CI runs them, then the tutorial.
    import html
    start = html.unescape((out/'getting_started.html').read_text())
    assert readme_command('main-job') in start and readme_command('tests') in start and 'href="tutorial.html"' in start
    # One page per capability, each in the navigation of every page, with the screenshots that exist for it.
    guides = ['guide_tracking.html', 'guide_reproduce.html', 'guide_pipelines.html', 'guide_drift_and_quota.html', 'guide_promotion.html']
    assert set(guides) <= pages
    for page in ['index.html', 'tutorial.html', 'drift.html', *guides]:
        assert all(f'href="{g}"' in (out/page).read_text() for g in guides if g != page), page
    shots = {'guide_tracking.html': ['magics_in_jupyterlab.png'],
             'guide_drift_and_quota.html': ['drift_widget.png', 'drift_widget_strict_alpha.png', 'quota_widget.png']}
    for page, pngs in shots.items():
        for png in pngs:
            assert f'src="screenshots/{png}"' in (out/page).read_text() and (out/'screenshots'/png).stat().st_size > 10_000
    # The tutorial page is the executed notebook: its outputs are there.
    import re
    tutorial = html.unescape(re.sub(r'<[^>]+>', '', (out/'tutorial.html').read_text()))
    assert '%load_ext mlops_nb' in tutorial and "['mean radius']" in tutorial and 'DRIFT: 1 of 30 columns drift' in tutorial
    assert 'v- -> v1 (promoted by tutorial)' in tutorial
    errors = html.unescape(re.sub(r'<[^>]+>', '', (out/'errors.html').read_text()))
    assert '1/0' in errors and 'ZeroDivisionError' not in errors  # the broken example is on its page, rendered, not run


@pytest.mark.parametrize('edit, where, why', [
    (('mlops-nb sweep notebooks/train.ipynb', 'mlops-nb sweeps notebooks/train.ipynb'), 'docs/guides/pipelines.md:',
     '`mlops-nb sweeps`: no such command'),
    (('--workers 2', '--parallel 2'), 'docs/guides/pipelines.md:', '`mlops-nb sweep` has no option `--parallel`'),
    (('%mlops runs --last 5', '%mlops runs --limit 5'), 'docs/guides/tracking.md:', '`%mlops runs` has no option `--limit`'),
    (('mn.register_candidate("churn")', 'mn.register("churn")'), 'docs/guides/promotion.md:', '`mn.register` does not exist'),
    (('(reproduce.md)', '(reproducing.md)'), 'docs/guides/', 'the link `reproducing.md` leads nowhere in the repository'),
    (('(../screenshots/quota_widget.png)', '(../screenshots/quota.png)'), 'docs/guides/drift_and_quota.md', 'the link `../screenshots/quota.png` leads nowhere in the repository'),
])
def test_docs_build_refuses_guides_that_no_longer_match_the_code(repo, edit, where, why):
    "A renamed command, option, verb or function, or a moved page, fails the build where the guide shows it."
    md = next(p for p in sorted((repo/'docs'/'guides').glob('*.md')) if edit[0] in p.read_text())
    md.write_text(md.read_text().replace(edit[0], edit[1], 1))
    r = subprocess.run([sys.executable, str(repo/'docs'/'build.py'), '--out', str(repo/'site'), '--no-execute'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and where in r.stderr and why in r.stderr, r.stdout + r.stderr
    assert not (repo/'site').exists()  # nothing is built from docs that do not match


def test_docs_build_fails_on_a_broken_example(repo):
    def breaks(nb): cell_with(nb, 'e = MlopsNbError(')['source'].append('\n1/0')
    edit_nb(nb_file(repo, 'errors'), breaks)
    r = subprocess.run([sys.executable, str(repo/'docs'/'build.py'), '--out', str(repo/'site')], capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and f"{nb_file(repo, 'errors').relative_to(repo)} failed" in r.stderr and 'ZeroDivisionError' in r.stderr
    assert 'docs: 01_config.ipynb' not in r.stdout  # it stops at the first broken notebook


def test_docs_build_refuses_an_unknown_notebook_to_execute(repo):
    "`--execute NB` names a notebook of nbs/ (the build that executes only the one asked for: the test above)."
    r = subprocess.run([sys.executable, str(repo/'docs'/'build.py'), '--out', str(repo/'site2'), '--execute', 'nope.ipynb'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and '--execute nope.ipynb: no such notebook in nbs/' in r.stderr and not (repo/'site2').exists()




def test_imports_go_one_way_with_no_private_names_across_modules(tmp_path):
    "`.ci/check-imports` passes on the tree, and fails naming the file, line and name on each way of breaking it."
    r = subprocess.run([sys.executable, str(REPO/'.ci'/'check-imports')], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    copy = tmp_path/'repo'
    shutil.copytree(REPO/'mlops_nb', copy/'mlops_nb', ignore=shutil.ignore_patterns('__pycache__'))
    shutil.copytree(REPO/'nbs', copy/'nbs'); shutil.copytree(REPO/'.ci', copy/'.ci')
    check = lambda: subprocess.run([sys.executable, str(copy/'.ci'/'check-imports')], capture_output=True, text=True)
    config, errors = copy/lib_file(copy, 'config'), copy/lib_file(copy, 'errors')
    config.write_text(config.read_text() + '\ndef _later():\n    from mlops_nb.tracking.runs import _State\n')
    errors.write_text(errors.read_text() + '\ndef _later():\n    from mlops_nb.core.redact import redact_text\n')
    r = check()
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert any(l.startswith(f"{lib_file(copy, 'config')} line") and '._State` of another module' in l for l in lines), r.stdout
    assert any(l.startswith('an import cycle between ') and re.search(r'\bconfig\b', l) for l in lines), r.stdout  # tracking imports config
    assert re.search(rf"{lib_file(copy, 'errors')} imports (core\.)?redact, whose notebook nbs/\S*_redact\.ipynb comes after "
                     rf"{nb_file(copy, 'errors').relative_to(copy)}", r.stdout), r.stdout
