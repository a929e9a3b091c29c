"""`mlops-nb run` and `mlops-nb sweep` as a user runs them: real kernels, a real store, the installed console script."""
import json, os, signal, subprocess, time
from pathlib import Path

import pytest

from conftest import mlops_nb_cli, BIN
from mlops_nb.core.config import resolve_settings
from mlops_nb.store.client import open_client
from mlops_nb.core.names import meta_of

pytestmark = pytest.mark.integration


def _write_nb(path, *cells, params="lr = 0.1\nepochs: int = 3\nname = 'base'"):
    cells = [(params, ['parameters'])] + [(c, []) for c in cells]
    nb = dict(nbformat=4, nbformat_minor=5, metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')),
              cells=[dict(cell_type='code', id=f"c{i}", metadata=dict(tags=t) if t else {}, execution_count=None, outputs=[], source=s)
                     for i, (s, t) in enumerate(cells)])
    Path(path).write_text(json.dumps(nb, indent=1)); return Path(path)


def _runs(project):
    c = open_client(resolve_settings(project_dir=project))
    return c, c.search_runs([e.experiment_id for e in c.search_experiments()], order_by=['attributes.start_time ASC'])


TRAIN = "import mlops_nb as mn\nfor i in range(epochs): mn.log_metric('loss', lr / (i + 1), step=i)\nprint('trained', name)"


def test_run_tracks_one_run_with_parameters_metrics_and_the_executed_notebook(project):
    _write_nb(project/'train.ipynb', TRAIN, "%load_ext mlops_nb\n%mlops track --name inner\n%mlops stop")
    r = mlops_nb_cli('run', 'train.ipynb', '-p', 'lr', '0.5', '-p', 'epochs', '2', cwd=project, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith('FINISHED') and 'loss=0.25' in r.stdout
    c, runs = _runs(project)
    assert len(runs) == 1, [x.data.tags.get('mlflow.runName') for x in runs]  # the notebook's own track/stop joined the run
    run = runs[0]
    assert run.info.status == 'FINISHED' and run.info.run_id in r.stdout
    assert (run.data.params['lr'], run.data.params['epochs']) == ('0.5', '2')
    assert [m.value for m in c.get_metric_history(run.info.run_id, 'loss')] == [0.5, 0.25]
    assert run.data.metrics['pipeline/wall_seconds'] > 0 and run.data.metrics['pipeline/kernel_peak_rss_mb'] > 10
    assert meta_of(run.data.tags)['notebook_source'] == 'mlops-nb run' and run.data.tags['mlflow.source.name'] == str(project/'train.ipynb')
    arts = {a.path for a in c.list_artifacts(run.info.run_id, 'pipeline')}
    assert any(p.endswith('.ipynb') for p in arts) and any(p.endswith('.html') for p in arts), arts
    executed = json.loads(Path(c.download_artifacts(run.info.run_id, next(p for p in arts if p.endswith('.ipynb')), str(project/'dl'))).read_text())
    assert any('trained base' in ''.join(o.get('text', '')) for cell in executed['cells'] for o in cell.get('outputs', []))
    ctx = json.loads(Path(c.download_artifacts(run.info.run_id, 'context/context.json', str(project/'dl'))).read_text())
    assert ctx['notebook']['path'] == str(project/'train.ipynb') and ctx['params']['papermill'] == {'lr': 0.5, 'epochs': 2}
    assert not list((project/'.mlops'/'journal').glob('*.log'))  # the kernel's journal was applied and removed


@pytest.mark.parametrize('args,needle', [
    (['-p', 'lrr', '0.1'], "Unknown parameter `lrr` for train.ipynb. Did you mean `lr`?"),
    (['-p', 'epochs', '2.5'], "Parameter `epochs` = '2.5' is not an int"),
])
def test_bad_parameters_fail_before_any_kernel_starts(project, args, needle):
    _write_nb(project/'train.ipynb', TRAIN)
    t0 = time.perf_counter()
    r = mlops_nb_cli('run', 'train.ipynb', *args, cwd=project)
    assert r.returncode == 2 and needle in r.stderr and 'Fix:' in r.stderr, r.stderr
    assert not (project/'.mlops'/'runs').exists()  # nothing ran


def test_parameters_file_and_command_line(project):
    _write_nb(project/'train.ipynb', TRAIN)
    (project/'p.yaml').write_text("lr: 0.2\nepochs: 1\nname: from-file\n")
    r = mlops_nb_cli('run', 'train.ipynb', '-f', 'p.yaml', '-p', 'epochs', '2', '--no-html', '--json', cwd=project, timeout=180)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)['parameters'] == {'lr': 0.2, 'epochs': 2, 'name': 'from-file'}
    (project/'bad.yaml').write_text("epochs: many\n")
    r = mlops_nb_cli('run', 'train.ipynb', '-f', 'bad.yaml', cwd=project)
    assert r.returncode == 2 and "Parameter `epochs` = 'many' is not an int" in r.stderr


@pytest.mark.parametrize('cell,args,needle', [
    ("import mlops_nb as mn\nmn.log_metric('before', 1.0)\nraise ValueError('bad input row 7')", [], "ValueError: bad input row 7"),
    ("import os\nos._exit(3)", [], "the kernel died"),
    ("import time\ntime.sleep(60)", ['--timeout', '2'], "timed out"),
])
def test_a_failing_notebook_is_recorded_as_failed_with_its_cell_and_traceback(project, cell, args, needle):
    _write_nb(project/'job.ipynb', "x = 1", cell, "print('never')")
    r = mlops_nb_cli('run', 'job.ipynb', '--no-html', *args, cwd=project, timeout=180)
    assert r.returncode == 7, r.stdout + r.stderr
    assert r.stdout.startswith('FAILED') and needle in r.stdout, r.stdout
    c, runs = _runs(project)
    run = runs[-1]
    assert run.info.status == 'FAILED' and needle in run.data.tags['mlops_nb.pipeline.error']
    if 'ValueError' in needle:
        assert run.data.metrics['before'] == 1.0  # logged before the failure: kept
        assert "raise ValueError('bad input row 7')" in r.stdout  # the failing cell is shown
        err = Path(c.download_artifacts(run.info.run_id, 'pipeline/error.txt', str(project/'dl'))).read_text()
        assert 'bad input row 7' in err and 'Traceback' in err
    partial = next((project/'.mlops'/'runs').glob('job-*.ipynb'))  # the partly executed notebook is kept
    assert 'never' not in ''.join(str(c_.get('outputs')) for c_ in json.loads(partial.read_text())['cells'])


def test_ctrl_c_stops_the_run_cleanly(project):
    _write_nb(project/'slow.ipynb', "import mlops_nb as mn\nmn.log_metric('started', 1.0)\nprint('sleeping', flush=True)", "import time\ntime.sleep(120)")
    p = subprocess.Popen([str(BIN/'mlops-nb'), 'run', 'slow.ipynb', '--no-html'], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    def sleeping():  # papermill saves the executed copy as each cell starts: the sleeping cell is marked running
        for f in (project/'.mlops'/'runs').glob('slow-*.ipynb'):
            try: cells = json.loads(f.read_text())['cells']
            except (OSError, ValueError): continue  # not written yet
            if any('time.sleep(120)' in ''.join(c['source']) and (c['metadata'].get('papermill') or {}).get('status') == 'running' for c in cells):
                return True
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not sleeping(): time.sleep(0.1)
    assert sleeping(), "the sleeping cell never started"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, out + err
    c, runs = _runs(project)
    assert runs and runs[-1].info.status == 'KILLED' and runs[-1].data.metrics.get('started') == 1.0


def test_sweep_runs_the_grid_under_one_parent(project):
    _write_nb(project/'train.ipynb', TRAIN)
    r = mlops_nb_cli('sweep', 'train.ipynb', '-p', 'lr', '0.1,0.2', '-p', 'epochs', '1,2', '--workers', '2', cwd=project, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert '4 runs, 0 failed' in r.stdout and 'loss' in r.stdout.splitlines()[0]
    c, runs = _runs(project)
    parent = [x for x in runs if x.data.tags.get('mlops_nb.sweep') == 'parent']
    assert len(parent) == 1 and parent[0].info.status == 'FINISHED'
    children = [x for x in runs if x.data.tags.get('mlflow.parentRunId') == parent[0].info.run_id]
    assert sorted((x.data.params['lr'], x.data.params['epochs']) for x in children) == [('0.1', '1'), ('0.1', '2'), ('0.2', '1'), ('0.2', '2')]
    assert all(x.info.status == 'FINISHED' and 'loss' in x.data.metrics for x in children)
    r = mlops_nb_cli('sweep', 'train.ipynb', '-p', 'epochs', '1,two', cwd=project)
    assert r.returncode == 2 and "Parameter `epochs` = 'two' is not an int" in r.stderr


SWEEPER = """
import sys
from mlops_nb.pipelines.sweeps import sweep
out = sweep('train.ipynb', [('lr', '0.1,0.2'), ('epochs', '1')], workers=2, executor='local')
print('SWEEP', out.parent_run_id, len(out.results), out.ok)
print('MLFLOW', sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow')[:3])
"""


def test_a_sweep_on_the_embedded_store_reaches_it_by_the_journal_alone(project):
    "The parent run is journaled and applied like its children's outcomes: no MLflow import, nothing left in the journal folder."
    _write_nb(project/'train.ipynb', TRAIN)
    from mlops_nb.store.client import ensure_store
    ensure_store(resolve_settings(project_dir=project))  # the store template is built with MLflow once: here, not in the sweep
    r = subprocess.run([os.sys.executable, '-c', SWEEPER], cwd=project, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    pid, n, ok = r.stdout.split('SWEEP ', 1)[1].split('\n', 1)[0].split()
    assert (n, ok) == ('2', 'True') and "MLFLOW []" in r.stdout, r.stdout
    c, runs = _runs(project)
    parent = c.get_run(pid)
    assert parent.info.status == 'FINISHED' and parent.data.tags['mlops_nb.sweep'] == 'parent'
    assert (parent.data.params['sweep.size'], parent.data.metrics['sweep/finished'], parent.data.metrics['sweep/failed']) == ('2', 2.0, 0.0)
    assert sorted(x.data.params['lr'] for x in runs if x.data.tags.get('mlflow.parentRunId') == pid) == ['0.1', '0.2']
    assert not list((project/'.mlops'/'journal').glob('*.log'))


def test_a_notebook_reads_back_a_finished_run(project):
    _write_nb(project/'train.ipynb', TRAIN)
    r = mlops_nb_cli('run', 'train.ipynb', '--no-html', '--json', cwd=project, timeout=180)
    rid = json.loads(r.stdout)['run_id']
    _write_nb(project/'report.ipynb', "import mlops_nb.pipelines.outcome as p\nrun = p.load_run(run_id)\n"
              "assert run.metrics['loss'] == 0.1 / 3 and run.params['lr'] == '0.1'\n"
              "ctx = run.artifact('context/context.json').read_text()\nimport mlops_nb as mn\nmn.log_metric('source_loss', run.metrics['loss'])",
              params="run_id = ''")
    r = mlops_nb_cli('run', 'report.ipynb', '-p', 'run_id', rid, '--no-html', cwd=project, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'source_loss=0.03333' in r.stdout


def test_under_plain_papermill_a_failing_cell_ends_the_run_failed(project, tmp_path):
    _write_nb(project/'plain.ipynb', "%load_ext mlops_nb\n%mlops track --name plain --system-metrics 0", "import mlops_nb as mn\nmn.log_metric('m', 1.0)",
              "raise RuntimeError('stop here')")
    r = subprocess.run([str(BIN/'papermill'), 'plain.ipynb', str(tmp_path/'out.ipynb')], cwd=project, capture_output=True, text=True, timeout=180)
    assert r.returncode != 0 and 'stop here' in r.stderr
    mlops_nb_cli('sync', cwd=project, check=True)  # papermill may stop the kernel before it drained (a first store takes seconds)
    c, runs = _runs(project)
    assert [(x.info.status, x.data.metrics.get('m')) for x in runs] == [('FAILED', 1.0)]  # not FINISHED: the kernel knew


def test_the_executed_notebook_names_its_input_instead_of_embedding_it(project):
    _write_nb(project/'train.ipynb', TRAIN)
    r = mlops_nb_cli('run', 'train.ipynb', '--no-html', '--json', cwd=project, timeout=180)
    out = json.loads(Path(json.loads(r.stdout)['output']).read_text())
    assert out['metadata']['papermill']['input_path'] == str(project/'train.ipynb')


RUNNER = """
import sys
from mlops_nb.cli import _run
from mlops_nb.pipelines.run import run_notebook
from mlops_nb.pipelines.outcome import record_run
code = _run(['run', 'train.ipynb', '-p', 'epochs', '2'], debug=False)  # the HTML on, as by default
res = run_notebook('train.ipynb', {'epochs': '2'}, html=False, record=False)  # executed, not recorded: as on a Dask worker
first, again = record_run(res.job), record_run(res.job)  # a retried recording of the same attempt
print('CODE', code, first['run_id'], again['run_id'], first['metrics']['pipeline/wall_seconds'] > 0)
print('MLFLOW', sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow')[:3])
"""


def test_recording_on_the_embedded_store_never_imports_mlflow_and_a_retry_makes_no_second_run(project):
    "The runner applies the kernel's journal and its own outcome records with sqlite3; recording an attempt twice joins one run."
    _write_nb(project/'train.ipynb', TRAIN)
    from mlops_nb.store.client import ensure_store
    ensure_store(resolve_settings(project_dir=project))  # the store template is built with MLflow once per MLflow version: here, not in the runner
    r = subprocess.run([os.sys.executable, '-c', RUNNER], cwd=project, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    code, first, again, metrics = r.stdout.split('CODE ', 1)[1].split('\n', 1)[0].split()
    assert (code, metrics, first == again) == ('0', 'True', True)
    assert "MLFLOW []" in r.stdout, r.stdout
    c, runs = _runs(project)
    assert len(runs) == 2 and {x.info.status for x in runs} == {'FINISHED'}
    run = c.get_run(first)
    assert [m.value for m in c.get_metric_history(first, 'loss')] == [0.1, 0.05] and run.data.tags['mlops_nb.pipeline.status'] == 'FINISHED'
    assert {a.path.rsplit('.', 1)[-1] for a in c.list_artifacts(first, 'pipeline')} == {'ipynb'}
    cli_run = next(x for x in runs if x.info.run_id != first)
    assert {a.path.rsplit('.', 1)[-1] for a in c.list_artifacts(cli_run.info.run_id, 'pipeline')} == {'ipynb', 'html'}
    assert not list((project/'.mlops'/'journal').glob('*.log')) and not (project/'.mlops'/'journal'/'kept').exists()
