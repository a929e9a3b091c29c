"""Team mode on a real PostgreSQL: `mlops-nb server` on a database, and two `mlops-nb run` workers sharing one Optuna study.

Needs a PostgreSQL server. Where one runs (this project's CI machines: 127.0.0.1:5432, trust auth, database `test`),
each test creates its own databases and drops them. Elsewhere, point MLOPS_NB_TEST_PG at one
(`postgresql://user@host:5432/db`, a user allowed to CREATE DATABASE), or start one, e.g. on Debian:
`apt-get install postgresql && pg_ctlcluster 15 main start` (`.ci/run` does this when none answers).
"""
import json, os, re, signal, subprocess, time, uuid
from pathlib import Path

import pytest

from conftest import BIN, mlops_nb_cli

pytestmark = pytest.mark.integration
PG = os.environ.get('MLOPS_NB_TEST_PG', 'postgresql://postgres@127.0.0.1:5432/test')


def _no_postgres(why):
    "Skip, or in CI (`CI` set, as .ci/run sets it) fail: there, a missing PostgreSQL must not pass silently."
    if os.environ.get('CI'): pytest.fail(f"{why} (CI is set: team-mode and server-store tests must run)")
    pytest.skip(why)


@pytest.fixture
def databases():
    "A function making fresh PostgreSQL databases (dropped at the end); skips when no PostgreSQL answers, fails in CI."
    try: import psycopg
    except ImportError: _no_postgres('psycopg is not installed: pip install "mlops-nb[team]"')
    try: admin = psycopg.connect(PG, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e: _no_postgres(f"no PostgreSQL at {PG} ({str(e).splitlines()[0]}); see this module's docstring")
    made = []
    def make():
        name = f"mlopsnb_{uuid.uuid4().hex[:10]}"
        admin.execute(f'CREATE DATABASE "{name}"'); made.append(name)
        return PG.rsplit('/', 1)[0] + '/' + name
    yield make
    for name in made: admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def server(databases, project):
    "`mlops-nb server` on a fresh PostgreSQL database, on a free port; yields its URL."
    p = subprocess.Popen([str(BIN/'mlops-nb'), 'server', '--backend-store-uri', databases(), '--port', '0', '--workers', '1'],
                         cwd=project, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    line, deadline = '', time.monotonic() + 120
    while time.monotonic() < deadline and 'Tracking server' not in line:
        line = p.stdout.readline()
        if not line and p.poll() is not None: break
    m = re.search(r'at (http://\S+)', line)
    assert m, f"the server did not come up (exit code {p.poll()}): {line!r}"
    yield m.group(1)
    os.killpg(p.pid, signal.SIGTERM)
    try: p.wait(30)
    except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL)


STUDY_NB = [("optuna_storage = ''\nstudy_name = 'shared'\nn_trials = 3\nworker = 0", ['parameters']),
            ("import optuna, mlops_nb as mn\noptuna.logging.set_verbosity(optuna.logging.WARNING)\n"
             "study = optuna.load_study(storage=optuna_storage, study_name=study_name, sampler=optuna.samplers.RandomSampler(seed=worker))\n"
             "def objective(trial):\n"
             "    x = trial.suggest_float('x', -5, 5)\n"
             "    with mn.track(name=f'trial-{trial.number}', nested=True, system_metrics=None,\n"
             "                  tags={'optuna.study': study_name, 'optuna.trial': trial.number, 'worker': worker}):\n"
             "        mn.log_param('x', x); mn.log_metric('value', (x - 1) ** 2)\n"
             "    return (x - 1) ** 2\n"
             "study.optimize(objective, n_trials=n_trials)\nmn.log_metric('trials_seen', len(study.trials))", [])]


def test_two_workers_share_one_study_tracked_on_a_postgres_backed_server(server, databases, project):
    import optuna
    from mlflow import MlflowClient
    storage = databases().replace('postgresql://', 'postgresql+psycopg://')
    optuna.create_study(storage=storage, study_name='shared', direction='minimize')  # made once, as a team lead would
    nb = dict(nbformat=4, nbformat_minor=5, metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')),
              cells=[dict(cell_type='code', id=f"c{i}", metadata=dict(tags=t) if t else {}, execution_count=None, outputs=[], source=s)
                     for i, (s, t) in enumerate(STUDY_NB)])
    (project/'study.ipynb').write_text(json.dumps(nb))
    env = {**os.environ, 'MLOPS_NB_TRACKING_URI': server}
    workers = [subprocess.Popen([str(BIN/'mlops-nb'), 'run', 'study.ipynb', '--no-html', '--json', '-p', 'optuna_storage', storage,
                                 '-p', 'worker', str(w), '--name', f'worker-{w}'], cwd=project, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in (1, 2)]
    outs = [w.communicate(timeout=300) for w in workers]
    assert all(w.returncode == 0 for w in workers), outs
    study = optuna.load_study(storage=storage, study_name='shared')
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 6 and sorted(t.number for t in done) == list(range(6))
    c = MlflowClient(server)
    exp = c.get_experiment_by_name('demo-project')
    trials = c.search_runs([exp.experiment_id], filter_string="tags.`optuna.study` = 'shared'")
    assert sorted(int(r.data.tags['optuna.trial']) for r in trials) == list(range(6))  # every trial, from both workers, in MLflow
    parents = {json.loads(o)["run_id"] for o, _ in outs}  # stdout is the JSON alone (no MLflow "View run" lines)
    assert {r.data.tags['mlflow.parentRunId'] for r in trials} == parents and len(parents) == 2
    assert {r.data.tags['worker'] for r in trials} == {'1', '2'}
    for r in trials: assert abs(r.data.metrics['value'] - next(t.value for t in done if t.number == int(r.data.tags['optuna.trial']))) < 1e-12


def test_server_refuses_a_missing_or_unreachable_database(project):
    r = mlops_nb_cli('server', cwd=project)
    assert r.returncode == 3 and 'server_store_uri' in r.stderr and 'Fix:' in r.stderr
    r = mlops_nb_cli('server', '--backend-store-uri', 'postgresql://u:secretpw@127.0.0.1:9/x', cwd=project)
    assert r.returncode == 3 and 'cannot connect to 127.0.0.1:9' in r.stderr and 'secretpw' not in r.stderr
    r = mlops_nb_cli('server', '--backend-store-uri', 'http://x', cwd=project)
    assert r.returncode == 3 and 'needs a database URI' in r.stderr
