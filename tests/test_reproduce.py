"""`mlops-nb reproduce` and `mlops-nb diff` end to end: a git project, notebooks run by papermill on real kernels."""
import json, subprocess, sys
from pathlib import Path

import pytest

from conftest import mlops_nb_cli, BIN
from mlops_nb.core.names import meta_of

pytestmark = pytest.mark.integration


def _nb(seeded):
    "A scikit-learn notebook: parameters, data from an ignored file, a project module with uncommitted edits."
    cells = [("n_iter = 50", ['parameters']),
             ("%load_ext mlops_nb\nimport json, numpy as np, pandas as pd\nimport mlops_nb as mn\nimport features", []),
             ("%mlops track --name train --system-metrics 0", []),
             ("mn.seed(0)" if seeded else "pass", []),
             ("df = pd.read_csv('data/train.csv')\nmn.track_data('data/train.csv', name='train')\n"
              "cfg = json.load(open('config.json'))", []),
             ("from sklearn.linear_model import LogisticRegression\n"
              "X = features.make(df) + np.random.normal(scale=cfg['noise'], size=(len(df), 2))\n"
              "m = LogisticRegression(max_iter=n_iter).fit(X, df['y'])\n"
              "for i in range(3): mn.log_metric('accuracy', float(m.score(X, df['y'])) - i * 0.01, step=i)\n"
              "mn.log_metric('coef0', float(m.coef_[0][0]))", []),
             ("%mlops stop", [])]
    return dict(nbformat=4, nbformat_minor=5, metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')),
                cells=[dict(cell_type='code', id=f"c{i}", metadata=dict(tags=t) if t else {}, execution_count=None, outputs=[], source=s)
                       for i, (s, t) in enumerate(cells)])


def run_git(root, *args): subprocess.run(['git', '-C', str(root), *args], check=True, capture_output=True)


def _write_data(project, shift=0.0):
    import numpy as np
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=200), rng.normal(size=200)
    rows = ["a,b,y"] + [f"{x + shift:.6f},{z:.6f},{int(x + z > 0)}" for x, z in zip(a, b)]
    (project/'data').mkdir(exist_ok=True); (project/'data'/'train.csv').write_text('\n'.join(rows) + '\n')


@pytest.fixture
def repo(project):
    "The project as a git repository: notebook and module committed, a module edit left uncommitted, data ignored."
    (project/'.gitignore').write_text(".mlops/\ndata/\n")
    (project/'features.py').write_text("def make(df): return df[['a', 'b']].to_numpy()\n")
    for seeded in (True, False):
        (project/f"{'seeded' if seeded else 'unseeded'}.ipynb").write_text(json.dumps(_nb(seeded), indent=1))
    _write_data(project)
    run_git(project, 'init', '-q', '-b', 'main'); run_git(project, 'config', 'user.email', 'ci@example.com'); run_git(project, 'config', 'user.name', 'CI')
    run_git(project, 'add', '-A'); run_git(project, 'commit', '-qm', 'notebooks')
    (project/'features.py').write_text("def make(df): return df[['a', 'b']].to_numpy() * 2.0  # not committed\n")
    (project/'config.json').write_text('{"noise": 0.8}')  # untracked
    return project


def _papermill(project, notebook, tmp_path, **params):
    args = [str(BIN/'papermill'), notebook, str(tmp_path/f'out-{notebook}'), '--no-progress-bar']
    for k, v in params.items(): args += ['-p', k, str(v)]
    r = subprocess.run(args, cwd=project, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.store.client import open_client
    s = resolve_settings(project_dir=project)
    c = open_client(s)
    runs = c.search_runs([c.get_experiment_by_name('demo-project').experiment_id], order_by=['attributes.start_time DESC'])
    return runs[0], c


def test_seeded_notebook_reproduces_and_changed_data_is_named(repo, tmp_path):
    run, client = _papermill(repo, 'seeded.ipynb', tmp_path, n_iter=60)
    assert run.info.status == 'FINISHED' and meta_of(run.data.tags)['git.dirty'] == 'True'
    r = mlops_nb_cli('reproduce', run.info.run_id, cwd=repo, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'REPRODUCED' in r.stdout and 'NOT' not in r.stdout
    assert 'accuracy' in r.stdout and 'coef0' in r.stdout
    assert 'with parameters {"n_iter": 60}' in r.stderr  # the recorded papermill parameter, not the notebook's default
    new_id = r.stdout.split('REPRODUCED: run ')[1].split()[0]
    new = client.get_run(new_id)
    assert new.data.tags['mlops_nb.reproduces'] == run.info.run_id
    assert new.data.metrics['coef0'] == run.data.metrics['coef0']

    _write_data(repo, shift=0.5)  # the data file changes under the same path
    r = mlops_nb_cli('reproduce', run.info.run_id, '--json', cwd=repo, timeout=300)
    assert r.returncode == 9, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out['reproduced'] is False and out['causes'][0].startswith('changed data: `train`'), out['causes']
    assert not any('unseeded' in c for c in out['causes'])

    d = mlops_nb_cli('diff', run.info.run_id, out['new_run_id'], '--json', cwd=repo)
    assert d.returncode == 0, d.stderr
    keys = {(x['section'], x['key']) for x in json.loads(d.stdout)['differences']}
    assert ('data', 'train.fingerprint') in keys and ('metrics', 'coef0') in keys
    # same code and packages; only the branch differs (the re-run is on a detached checkout of the commit)
    assert {k for k in keys if k[0] in ('code', 'packages')} == {('code', 'branch')}, keys


def test_unseeded_notebook_is_not_reproduced_and_randomness_is_named(repo, tmp_path):
    run, _ = _papermill(repo, 'unseeded.ipynb', tmp_path)
    r = mlops_nb_cli('reproduce', run.info.run_id, cwd=repo, timeout=300)
    assert r.returncode == 9, r.stdout + r.stderr
    assert 'NOT REPRODUCED' in r.stdout and 'likely cause: unseeded randomness' in r.stdout, r.stdout
    assert 'changed data' not in r.stdout and 'changed code' not in r.stdout


def test_reproduce_explains_what_it_cannot_do(repo, project):
    import mlops_nb as mn
    from mlops_nb.tracking import runs as tracking
    with mn.track('demo-project', system_metrics=None) as run:  # from this test process: no notebook file
        mn.log_metric('m', 1.0)
    assert mn.sync(60)
    tracking._State.tracker.close(); tracking._State.tracker = None
    r = mlops_nb_cli('reproduce', run.run_id, cwd=repo)
    assert r.returncode == 8 and 'did not come from a notebook' in r.stderr and 'Fix:' in r.stderr, r.stderr
    r = mlops_nb_cli('reproduce', 'f' * 32, cwd=repo)
    assert r.returncode == 8 and f"No run '{'f' * 32}'" in r.stderr, r.stderr
    r = mlops_nb_cli('reproduce', run.run_id, '--tolerance', '-1', cwd=repo)
    assert r.returncode == 2 and '--tolerance' in r.stderr


# -- redaction keeps the recorded changes usable ------------------------------------------------------------------------------
CONTEXT_KEY = 'planted-context-key-9911'  # committed, in a line the run's changes do not touch
ADDED_PW = 'planted-added-pw-7777'  # an uncommitted line that adds a secret


def _ttl_repo(project):
    "A committed notebook reading `config.py`, whose committed version holds a key next to `token_ttl = 30`."
    cells = [("lr = 0.1", ['parameters']), ("%load_ext mlops_nb\n%mlops track --system-metrics 0", []),
             ("import config, mlops_nb as mn\nmn.seed(0)\nmn.log_metric('ttl', config.token_ttl)", []), ("%mlops stop", [])]
    nb = dict(nbformat=4, nbformat_minor=5, metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')),
              cells=[dict(cell_type='code', id=f"c{i}", metadata=dict(tags=t) if t else {}, execution_count=None, outputs=[], source=s)
                     for i, (s, t) in enumerate(cells)])
    (project/'ttl.ipynb').write_text(json.dumps(nb, indent=1))
    (project/'.gitignore').write_text(".mlops/\n")
    (project/'config.py').write_text(f'API_KEY = "{CONTEXT_KEY}"\ntoken_ttl = 30\n')
    run_git(project, 'init', '-q', '-b', 'main'); run_git(project, 'config', 'user.email', 'ci@example.com'); run_git(project, 'config', 'user.name', 'CI')
    run_git(project, 'add', '-A'); run_git(project, 'commit', '-qm', 'ttl')
    return project


def _last_run(project):
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.store.client import open_client
    c = open_client(resolve_settings(project_dir=project))
    return c.search_runs([e.experiment_id for e in c.search_experiments()], order_by=['attributes.start_time DESC'])[0], c


def test_a_harmless_edit_next_to_a_redacted_secret_is_recorded_as_made_and_reproduces(project, tmp_path):
    _ttl_repo(project)
    (project/'config.py').write_text(f'API_KEY = "{CONTEXT_KEY}"\ntoken_ttl = 31\n')  # the edit: no secret in it
    r = mlops_nb_cli('run', 'ttl.ipynb', '--no-html', cwd=project, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    run, c = _last_run(project)
    assert run.data.metrics['ttl'] == 31.0
    diff = Path(c.download_artifacts(run.info.run_id, 'context/git.diff', str(tmp_path))).read_text()
    assert '-token_ttl = 30\n+token_ttl = 31\n' in diff and ' API_KEY = "***"\n' in diff and CONTEXT_KEY not in diff, diff
    r = mlops_nb_cli('reproduce', run.info.run_id, cwd=project, timeout=300)
    assert r.returncode == 0 and 'REPRODUCED' in r.stdout, r.stdout + r.stderr  # the redacted unchanged line came back from the commit


def test_reproduce_names_the_added_line_whose_secret_was_redacted(project, tmp_path):
    _ttl_repo(project)
    (project/'config.py').write_text(f'API_KEY = "{CONTEXT_KEY}"\ntoken_ttl = 30\nDB_PASSWORD = "{ADDED_PW}"\n')
    r = mlops_nb_cli('run', 'ttl.ipynb', '--no-html', cwd=project, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    run, _ = _last_run(project)
    r = mlops_nb_cli('reproduce', run.info.run_id, cwd=project, timeout=120)
    assert r.returncode == 8, r.stdout + r.stderr
    assert 'add 1 line(s) that held a secret' in r.stderr and 'config.py line 3' in r.stderr and 'Fix:' in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr and ADDED_PW not in r.stderr + r.stdout
