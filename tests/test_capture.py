"""What a run captures to be re-created: checked in the store, after real runs (in-process and papermill kernels)."""
import json, subprocess, sys, textwrap
from pathlib import Path

import pytest

import mlops_nb as mn
from mlops_nb.tracking import runs as tracking
from mlops_nb.core.config import resolve_settings
from mlops_nb.store.client import open_client
from conftest import BIN
from mlops_nb.core.names import meta_of


@pytest.fixture
def fresh_tracker():
    "No tracker left from another test, and none left behind."
    yield
    if tracking._State.runs: tracking._end_all('FINISHED')
    if tracking._State.tracker: tracking._State.tracker.close(); tracking._State.tracker = None


def _context(client, run_id, tmp_path):
    return json.loads(Path(client.download_artifacts(run_id, 'context/context.json', str(tmp_path))).read_text())


def run_git(root, *args): return subprocess.run(['git', '-C', str(root), *args], check=True, capture_output=True, text=True).stdout


@pytest.mark.integration
def test_data_and_seed_recorded_before_the_run_starts_are_attached_to_it(project, fresh_tracker, tmp_path):
    import pandas as pd
    df = pd.DataFrame({'x': range(1000), 'label': ['a', 'b'] * 500})
    mn.seed(7)
    rec = mn.track_data(df, name='train', source='warehouse.table_x')
    with mn.track('cap', system_metrics=None) as run:
        mn.track_data(df.iloc[:100], name='holdout', role='eval')
        mn.log_param('lr', 0.1)
    assert mn.sync(60)
    c = open_client(resolve_settings())
    r = c.get_run(run.run_id)
    assert meta_of(r.data.tags)['seed'] == '7'
    assert meta_of(r.data.tags)['data.train.fingerprint'] == rec['fingerprint']
    assert (meta_of(r.data.tags)['data.train.rows'], meta_of(r.data.tags)['data.holdout.role']) == ('1000', 'eval')
    ctx = _context(c, run.run_id, tmp_path)
    assert set(ctx['data']) == {'train', 'holdout'} and ctx['data']['train']['source'] == 'warehouse.table_x'
    assert ctx['seeds']['seed'] == 7 and ctx['seeds']['seeded'] and ctx['params']['logged'] == {'lr': '0.1'}
    assert ctx['code']['git'] is None  # no repository here: said, not invented
    lock = Path(c.download_artifacts(run.run_id, 'context/requirements.lock.txt', str(tmp_path))).read_text()
    import mlflow
    assert f"mlflow=={mlflow.__version__}\n" in lock and ctx['environment']['packages']['mlflow'] == mlflow.__version__


@pytest.mark.integration
def test_fingerprints_are_stable_across_processes(tmp_path):
    code = textwrap.dedent("""
        import numpy as np, pandas as pd
        from mlops_nb.tracking.capture import fingerprint
        rng = np.random.default_rng(3)
        df = pd.DataFrame({'f': rng.normal(size=5000), 'i': rng.integers(0, 9, 5000), 's': [f'u{i}' for i in range(5000)],
                           'c': pd.Categorical(['x', 'y'] * 2500), 't': pd.date_range('2026-01-01', periods=5000, freq='min')})
        df.loc[3, 's'] = None
        print(fingerprint(df)['fingerprint'])
    """)
    outs = {subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                           env={'PYTHONHASHSEED': str(seed), 'PATH': '/usr/bin:/bin'}).stdout.strip() for seed in (1, 2)}
    assert len(outs) == 1 and len(outs.pop()) == 64


@pytest.mark.integration
def test_a_failing_capture_is_reported_on_the_run_and_does_not_stop_it(project, fresh_tracker, monkeypatch):
    from mlops_nb.tracking import capture
    def broken(*a, **k): raise OSError("disk full")
    monkeypatch.setattr(capture, 'capture_context', broken)  # a fault injected into the capture, not the store
    with mn.track('cap', system_metrics=None) as run: mn.log_metric('m', 1.0)
    assert mn.sync(60)
    r = open_client(resolve_settings()).get_run(run.run_id)
    assert r.info.status == 'FINISHED' and r.data.metrics['m'] == 1.0
    assert meta_of(r.data.tags)['capture_error'] == 'OSError: disk full'


@pytest.mark.integration
def test_bad_tags_variable_names_value_and_fix(project, fresh_tracker, monkeypatch):
    monkeypatch.setenv('MLOPS_NB_TAGS', '[1, 2]')
    with pytest.raises(mn.MlopsNbError, match=r"(?s)MLOPS_NB_TAGS = '\[1, 2\]': not a JSON object.*Fix:"): mn.track('cap', system_metrics=None)


@pytest.mark.integration
def test_a_papermill_run_records_code_modules_notebook_and_parameters(project, tmp_path):
    (project/'.gitignore').write_text(".mlops/\n")
    (project/'helpers.py').write_text("SCALE = 1\n")
    nb = dict(nbformat=4, nbformat_minor=5, metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')),
              cells=[dict(cell_type='code', id=f"c{i}", metadata=dict(tags=t) if t else {}, execution_count=None, outputs=[], source=s)
                     for i, (s, t) in enumerate([("alpha = 0.1\nlayers = [8]", ['parameters']),
                                                 ("%load_ext mlops_nb\nimport helpers", []),
                                                 ("%mlops track --name pm --system-metrics 0", []),
                                                 ("x = helpers.SCALE * alpha", []), ("%mlops stop", [])])])
    (project/'pipe.ipynb').write_text(json.dumps(nb))
    run_git(project, 'init', '-q', '-b', 'dev'); run_git(project, 'config', 'user.email', 'a@b.c'); run_git(project, 'config', 'user.name', 'A')
    run_git(project, 'remote', 'add', 'origin', 'git@github.com:org/proj.git')
    run_git(project, 'add', '-A'); run_git(project, 'commit', '-qm', 'one')
    (project/'helpers.py').write_text("SCALE = 2  # edited, not committed\n")
    r = subprocess.run([str(BIN/'papermill'), 'pipe.ipynb', str(tmp_path/'out.ipynb'), '-p', 'alpha', '0.5', '-y', 'layers: [16, 4]',
                        '--no-progress-bar'], cwd=project, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    c = open_client(resolve_settings(project_dir=project))
    run = c.search_runs([c.get_experiment_by_name('demo-project').experiment_id])[0]
    t = run.data.tags | {f'mlops_nb.{k}': v for k, v in meta_of(run.data.tags).items()}
    assert t['mlflow.source.git.commit'] == run_git(project, 'rev-parse', 'HEAD').strip()
    assert (t['mlflow.source.git.branch'], t['mlflow.source.git.repoURL'], t['mlops_nb.git.dirty']) == ('dev', 'git@github.com:org/proj.git', 'True')
    assert json.loads(t['mlops_nb.papermill.parameters']) == {'alpha': 0.5, 'layers': [16, 4]}
    ctx = _context(c, run.info.run_id, tmp_path)
    import hashlib
    assert ctx['code']['modules']['helpers.py']['sha256'] == hashlib.sha256((project/'helpers.py').read_bytes()).hexdigest()
    assert ctx['code']['git']['changed'] == ['helpers.py'] and '+SCALE = 2' in ctx['code']['git']['diff']
    assert ctx['notebook']['relative_path'] == 'pipe.ipynb'
    assert ctx['notebook']['sha256'] == t['mlops_nb.notebook.sha256'] == hashlib.sha256((project/'pipe.ipynb').read_bytes()).hexdigest()
    # papermill's injected cell is 2, `%mlops track` 4: the cells run between track and stop are recorded
    assert [(c_['execution_count'], c_['success']) for c_ in ctx['notebook']['cells']] == [(5, True)]
    assert 'papermill' in ' '.join(ctx['command']['parent'])
    assert ctx['seeds']['seeded'] is False
