"""Executors against a real Dask scheduler and two real worker processes (`dask scheduler`, `dask worker`), started once.

One contract suite runs against every backend (`local`, `dask://`); the Dask-only behaviour (shipping, a worker killed
mid-run, Ctrl-C, Optuna trials, profiles of partitions) follows it."""
import json, os, signal, subprocess, time
from pathlib import Path

import pytest

from conftest import mlops_nb_cli, BIN
from mlops_nb.core.config import resolve_settings
from mlops_nb.store.client import open_client

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STEP = """import os, time
from pathlib import Path
import mlops_nb as mn
if marker:  # the first attempt of run `x` waits here (up to `wait` s) until the test lets it go; a retry does not
    m = Path(marker); again = (m/f"{x}.pid").exists()
    (m/f"{x}.pid").write_text(str(os.getpid()))
    t0 = time.time()
    while not again and time.time() - t0 < wait and not (m/'go').exists(): time.sleep(0.05)
if fail: raise ValueError(f"bad x {x}")
mn.log_metric('y', x * 2.0)
print('done', x)"""


def _write_nb(path, src=STEP, params="x: int = 1\nfail: bool = False\nmarker: str = ''\nwait: float = 0.0"):
    cells = [(params, ['parameters']), (src, [])]
    nb = dict(nbformat=4, nbformat_minor=5, metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')),
              cells=[dict(cell_type='code', id=f"c{i}", metadata=dict(tags=t) if t else {}, execution_count=None, outputs=[], source=s)
                     for i, (s, t) in enumerate(cells)])
    Path(path).write_text(json.dumps(nb, indent=1)); return Path(path)


def _runs(project, **filt):
    c = open_client(resolve_settings(project_dir=project))
    runs = c.search_runs([e.experiment_id for e in c.search_experiments()], order_by=['attributes.start_time ASC'])
    return c, [r for r in runs if all(r.data.tags.get(k) == v for k, v in filt.items())]


def _wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (v := pred()): return v
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
    "A Dask scheduler and two single-threaded worker processes, started with Dask's command line."
    from mlops_nb.pipelines.cluster import DaskCluster
    c = DaskCluster(workers=2, threads=1, folder=tmp_path_factory.mktemp('cluster')).start()
    yield c
    c.stop()


@pytest.fixture(params=['local', 'dask'])
def executor(request):
    return 'local' if request.param == 'local' else request.getfixturevalue('cluster').address


# -- the contract, for every backend ---------------------------------------------------------------------------------
def test_contract_runs_land_in_the_store_like_local_ones(project, executor):
    from mlops_nb.pipelines.executors import RunSpec, get_executor
    nb = _write_nb(project/'step.ipynb')
    s = resolve_settings(project_dir=project)
    specs = [RunSpec(str(nb), dict(x=1), name='one', output=str(project/'out'/'1.ipynb')),
             RunSpec(str(nb), dict(x=2, fail=True), name='two', output=str(project/'out'/'2.ipynb')),
             RunSpec(str(nb), dict(x=3, marker=str(project.parent/'marks'), wait=60.0), timeout=3, name='three')]
    (project.parent/'marks').mkdir()
    seen = []
    with get_executor(executor, 2, s) as ex:
        got = dict(ex.runs(specs, s, on_progress=lambda *a: seen.append(a)))
    ok, bad, slow = got[0], got[1], got[2]
    assert slow.status == 'FAILED' and slow.error == 'a cell timed out: A cell timed out while it was being executed, after 3 seconds.' and json.loads(Path(slow.output).read_text())
    assert (ok.status, ok.metrics['y']) == ('FINISHED', 2.0)
    assert bad.status == 'FAILED' and bad.error == "cell 4 raised ValueError: bad x 2" and 'raise ValueError' in bad.traceback
    assert bad.exit_code == 7 and seen[-1] == (3, 0, 2)
    executed = json.loads(Path(ok.output).read_text())
    assert ok.output == str(project/'out'/'1.ipynb') and any('done 1' in ''.join(o.get('text', '')) for c in executed['cells'] for o in c['outputs'])
    c, runs = _runs(project)
    by = {r.data.tags['mlflow.runName']: r for r in runs}
    assert set(by) == {'one', 'two', 'three'} and by['one'].info.status == 'FINISHED' and by['two'].info.status == by['three'].info.status == 'FAILED'
    assert by['two'].data.tags['mlops_nb.pipeline.error'] == "cell 4 raised ValueError: bad x 2"
    assert [m.value for m in c.get_metric_history(ok.run_id, 'y')] == [2.0]
    assert {a.path for a in c.list_artifacts(bad.run_id, 'pipeline')} >= {'pipeline/2.ipynb', 'pipeline/error.txt'}
    assert 'context/context.json' in {a.path for a in c.list_artifacts(ok.run_id, 'context')}  # staged beside the journal (shipped, on Dask)
    assert not list((project/'.mlops'/'journal').glob('*.log'))  # replayed and removed
    with get_executor(executor, 2, s) as ex: assert ex.map(abs, [-3, 4, -5]) == [3, 4, 5]


def test_contract_bad_executor_names_the_value_and_the_choices(project):
    r = mlops_nb_cli('sweep', 'step.ipynb', '-p', 'x', '1,2', '--executor', 'ray://h:1', cwd=_write_nb(project/'step.ipynb').parent)
    assert r.returncode == 3 and "Unknown executor 'ray://h:1'" in r.stderr and 'dask://HOST:PORT' in r.stderr, r.stderr
    r = mlops_nb_cli('run', 'step.ipynb', '--executor', 'dask://127.0.0.1:1', cwd=project)
    assert r.returncode == 3 and "No Dask scheduler answers at 'dask://127.0.0.1:1'" in r.stderr and 'Traceback' not in r.stderr, r.stderr


# -- Dask ------------------------------------------------------------------------------------------------------------
def test_sweep_of_six_runs_on_two_workers_lands_six_runs(project, cluster):
    _write_nb(project/'step.ipynb')
    (project/'pyproject.toml').write_text(f'[project]\nname = "demo-project"\n[tool.mlops_nb]\nexecutor = "{cluster.address}"\n')
    r = mlops_nb_cli('sweep', 'step.ipynb', '-p', 'x', '1,2,3,4,5,6', '--json', cwd=project, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert sorted((row['x'], row['y']) for row in out['runs']) == [(i, 2.0 * i) for i in range(1, 7)]
    c, runs = _runs(project, **{'mlflow.parentRunId': out['parent_run_id']})
    assert len(runs) == 6 and all(r.info.status == 'FINISHED' for r in runs)
    assert {r.data.tags['mlops_nb.executor.worker'] for r in runs} == set(cluster_workers(cluster))  # both workers ran some
    assert all(any(a.path.endswith('.ipynb') for a in c.list_artifacts(r.info.run_id, 'pipeline')) for r in runs)
    assert c.get_run(out['parent_run_id']).info.status == 'FINISHED' and 'on dask://' in r.stderr


def cluster_workers(cluster):
    from distributed import Client
    with Client(cluster.address.replace('dask://', 'tcp://'), set_as_default=False) as c: return list(c.scheduler_info()['workers'])


def test_a_worker_killed_mid_run_is_retried_once(project, cluster, tmp_path):
    import psutil
    from mlops_nb.pipelines.sweeps import run_on
    nb = _write_nb(project/'step.ipynb')
    marker = tmp_path/'marks'; marker.mkdir()
    import threading
    box = {}
    t = threading.Thread(target=lambda: box.update(res=run_on(cluster.address, nb, dict(x='7', marker=str(marker), wait='60'),
                                                                 settings=resolve_settings(project_dir=project))))
    t.start()
    kernel = psutil.Process(int(_wait_for(lambda: (marker/'7.pid').is_file() and (marker/'7.pid').read_text(), 120, 'the first attempt')))
    worker = kernel.parent()
    assert worker.pid in {p.pid for p in cluster.worker_processes().values()}
    for p in [kernel, worker]: p.kill()
    t.join(180)
    res = box['res']
    assert res.status == 'FINISHED' and res.metrics['y'] == 14.0, res
    c, runs = _runs(project)
    assert len(runs) == 1 and runs[0].data.tags['mlops_nb.executor.attempt'] == '2'
    assert runs[0].data.tags['mlops_nb.executor.retried'] == "the worker running the first attempt died"
    _wait_for(lambda: len(cluster_workers(cluster)) == 2, 60, 'the nanny to restart the worker')


def test_ctrl_c_cancels_the_sweeps_tasks(project, cluster, tmp_path):
    _write_nb(project/'step.ipynb')
    marker = tmp_path/'marks'; marker.mkdir()
    exe = str(BIN/'mlops-nb')
    p = subprocess.Popen([exe, 'sweep', 'step.ipynb', '-p', 'x', '1,2,3,4,5', '-p', 'marker', str(marker), '-p', 'wait', '90',
                          '--executor', cluster.address], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: len(list(marker.glob('*.pid'))) == 2, 120, 'two runs to start')
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, out + err
    assert time.monotonic() - t0 < 45  # the running kernels were killed, not waited for (they would wait 90 s)
    from distributed import Client
    with Client(cluster.address.replace('dask://', 'tcp://'), set_as_default=False) as c:
        _wait_for(lambda: not any(c.processing().values()), 30, 'the workers to be free')
    c, runs = _runs(project)
    parent = next(r for r in runs if r.data.tags.get('mlops_nb.sweep') == 'parent')
    kids = [r for r in runs if r.data.tags.get('mlflow.parentRunId') == parent.info.run_id]
    assert parent.info.status == 'KILLED'
    assert len(kids) == 2 and all(k.info.status == 'KILLED' for k in kids), [(k.info.status, k.data.tags.get('mlops_nb.pipeline.error')) for k in kids]
    assert len(list(marker.glob('*.pid'))) == 2  # the three others never started


OPTUNA = """import optuna, mlops_nb as mn
from mlops_nb.pipelines.workers import optimize
def objective(trial):
    v = trial.suggest_float('v', -3, 3)
    with mn.track(name=f"trial-{trial.number}", nested=True, system_metrics=None):
        mn.log_params({'v': v}); mn.log_metric('score', -(v - 1) ** 2)
    return -(v - 1) ** 2
study = optuna.create_study(storage=optuna_storage, study_name=study_name, direction='maximize',
                            sampler=optuna.samplers.TPESampler(seed=1))
study = optimize(study, objective, n_trials, executor, storage=optuna_storage)
mn.log_metric('trials', len(study.trials))
print(sorted({t.user_attrs['mlops_nb.worker'] for t in study.trials}))"""


def _optuna_storage(tmp_path):
    import socket
    try: socket.create_connection(('127.0.0.1', 5432), timeout=1).close()
    except OSError: return f"sqlite:///{tmp_path/'optuna.db'}"
    return "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def test_an_optuna_study_of_8_trials_runs_on_both_workers_as_nested_runs(project, cluster, tmp_path):
    import optuna, uuid
    _write_nb(project/'tune.ipynb', OPTUNA, params="n_trials: int = 8\nexecutor: str = ''\noptuna_storage: str = ''\nstudy_name: str = 's'")
    storage, name = _optuna_storage(tmp_path), f"mlops-nb-test-{uuid.uuid4().hex[:8]}"
    r = mlops_nb_cli('run', 'tune.ipynb', '-p', 'executor', cluster.address, '-p', 'optuna_storage', storage, '-p', 'study_name', name,
                     cwd=project, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    study = optuna.load_study(study_name=name, storage=storage)
    assert len(study.trials) == 8 and all(t.state.name == 'COMPLETE' for t in study.trials)
    per_worker = {w: sum(t.user_attrs['mlops_nb.worker'] == w for t in study.trials) for w in cluster_workers(cluster)}
    assert sorted(per_worker.values()) == [4, 4], per_worker
    c, runs = _runs(project)
    top = [x for x in runs if 'mlflow.parentRunId' not in x.data.tags]
    assert len(top) == 1 and top[0].data.metrics['trials'] == 8
    trials = [x for x in runs if x.data.tags.get('mlflow.parentRunId') == top[0].info.run_id]
    assert sorted(x.data.tags['mlflow.runName'] for x in trials) == sorted(f"trial-{t.number}" for t in study.trials)
    assert sorted(x.data.metrics['score'] for x in trials) == sorted(t.value for t in study.trials)
    optuna.delete_study(study_name=name, storage=storage)


def test_a_dask_dataframe_profile_equals_the_pandas_one(project, cluster, tmp_path):
    import numpy as np, pandas as pd, dask.dataframe as dd
    from distributed import Client
    from mlops_nb.monitoring.profiles import profile
    from mlops_nb.pipelines.workers import profile_on
    rng = np.random.default_rng(0)
    n = 200_000
    df = pd.DataFrame({'x': rng.normal(3, 2, n), 'k': np.char.add('c', rng.integers(0, 50, n).astype(str)), 'f': rng.integers(0, 9, n).astype(float)})
    df.loc[::97, 'f'] = np.nan
    ref = profile(df)
    with Client(cluster.address.replace('dask://', 'tcp://'), set_as_default=True):
        got = profile(dd.from_pandas(df, npartitions=6))
    (tmp_path/'pq').mkdir()
    for i in range(4): df.iloc[i * n // 4:(i + 1) * n // 4].to_parquet(tmp_path/'pq'/f"part-{i}.parquet")
    on_files = profile_on(tmp_path/'pq', cluster.address)
    for p in (got, on_files):
        assert p.rows == n and p.kinds == ref.kinds
        for col in ref:
            q = p[col.name]
            assert (q.count, q.null, q.inf, q.mismatch) == (col.count, col.null, col.inf, col.mismatch)
            if col.numeric:
                a, b = q.moments, col.moments
                assert (a.n, a.min, a.max) == (b.n, b.min, b.max)
                for k in ('mean', 'm2', 'm3', 'm4'): assert getattr(a, k) == pytest.approx(getattr(b, k), rel=1e-9, abs=1e-6)
                x = df[col.name].dropna().to_numpy()
                for rank, v in zip([0.1, 0.5, 0.9], q.quantiles([0.1, 0.5, 0.9])):  # within KLL's rank error (~0.7 % at k=400)
                    assert np.mean(x < v) - 0.02 <= rank <= np.mean(x <= v) + 0.02, (col.name, rank, v)
            else:
                assert q.categories() == col.categories() and abs(q.cardinality - col.cardinality) <= 2
    r = mlops_nb_cli('profile', str(tmp_path/'pq'), '-o', str(tmp_path/'p.json'), '--executor', cluster.address, cwd=project)
    assert r.returncode == 0 and f"Profiled {n:,} rows x 3 columns" in r.stdout, r.stdout + r.stderr
