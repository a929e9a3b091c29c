"""One contract for every store we support (the optuna `StorageTestCase` pattern): a journal applied through the store's
backend reads back, through MLflow's own client, as the user logged it.

Stores: the embedded store (our SQLite backend), MLflow's client on SQLite, and MLflow's client on PostgreSQL (a real
server: 127.0.0.1:5432 on this project's machines, or MLOPS_NB_TEST_PG). In CI (`CI=true`) a missing PostgreSQL is a
failure, not a skip."""
import math, os, sys, time, uuid
from pathlib import Path

import pytest

from mlops_nb.core.config import resolve_settings
from mlops_nb.tracking.journal import Journal, metric_line, store_key
from mlops_nb.store.backends import SqliteBackend, MlflowBackend
from mlops_nb.tracking.sync import apply_journal, journal_folder

pytestmark = [pytest.mark.slow, pytest.mark.integration]
PG = os.environ.get('MLOPS_NB_TEST_PG', 'postgresql://postgres@127.0.0.1:5432/test')


@pytest.fixture(scope='module')
def pg_admin():
    psycopg = pytest.importorskip('psycopg', reason='pip install "mlops-nb[team]"')
    try: admin = psycopg.connect(PG, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        msg = f"no PostgreSQL at {PG} ({str(e).splitlines()[0]}); .ci/run starts one"
        if os.environ.get('CI'): pytest.fail(msg)
        pytest.skip(msg)
    made = []
    def make():
        name = f"mlopsnb_{uuid.uuid4().hex[:10]}"; admin.execute(f'CREATE DATABASE "{name}"'); made.append(name)
        return PG.rsplit('/', 1)[0] + '/' + name
    yield make
    for name in made: admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(params=['embedded', 'mlflow-sqlite', 'mlflow-postgresql'])
def store(request, project, cache_dir):
    "`(settings, backend, client)` for one kind of store, in a fresh project."
    from mlops_nb.store.client import open_client
    if request.param == 'mlflow-postgresql':
        s = resolve_settings(tracking_uri=request.getfixturevalue('pg_admin')(), artifact_root=str(project/'artifacts'))
    else: s = resolve_settings()
    client = open_client(s, fresh=False)
    backend = SqliteBackend(s) if request.param == 'embedded' else MlflowBackend(client, s)
    return s, backend, client


def write_journal(s, project):
    j = Journal(journal_folder(s), store=store_key(s.tracking_uri))
    (project/'report.txt').write_text('the report')
    t = time.time()
    j.write_json(op='start', run='r1', experiment='contract', name='parent', tags={'mlflow.user': 'ana', 'team': 'churn'}, t=t)
    j.write_json(op='param', run='r1', key='lr', value='0.1')
    for i, v in enumerate([0.5, 0.4, float('nan'), 0.3]): j.write(metric_line('r1', 'loss', v, 1000 + i, i))
    j.write(metric_line('r1', 'big', float('inf'), 1000, 0))
    j.write_json(op='start', run='r2', experiment='contract', name='child', tags={}, parent='r1', t=t + 1)
    j.write(metric_line('r2', 'acc', 0.9, 1000, 0))
    j.write_json(op='param', run='r2', key='lr', value='0.2')  # the child's own params
    j.write_json(op='param', run='r1', key='lr', value='0.3')  # refused: params do not change
    j.write_json(op='tag', run='r1', key='x' * 300, value='v')  # refused: the key is too long
    j.write_json(op='end', run='r2', status='FAILED', t=t + 2)
    j.write_json(op='artifact', run='r1', path=str(project/'report.txt'), dest='reports')
    j.write_json(op='tag', run='r1', key='mlflow.runName', value='renamed')
    j.write_json(op='end', run='r1', status='FINISHED', t=t + 3)
    j.write_json(op='start', run='r3', experiment='contract', name='resumed', tags={}, resume='0' * 32, t=t + 4)  # no such run
    j.write(metric_line('r3', 'm', 1.0, 1000, 0))
    j.close()
    return j.path


def test_a_journal_reads_back_through_mlflow_as_it_was_logged(store, project):
    s, backend, c = store
    path = write_journal(s, project)
    out = apply_journal(path, backend, s, final=True)
    assert out['rejected'] == 4 and out['damaged'] == 0  # lr changed, the long key, and r3's start and metric
    exp = c.get_experiment_by_name('contract')
    assert exp.tags.get('mlflow.experimentKind') == 'custom_model_development'
    runs = {r.info.run_name: r for r in c.search_runs([exp.experiment_id])}
    assert set(runs) == {'renamed', 'child'}
    p, ch = runs['renamed'], runs['child']
    assert (p.info.status, ch.info.status) == ('FINISHED', 'FAILED')
    assert p.info.user_id == 'ana' and p.data.tags['team'] == 'churn'
    assert p.data.params == {'lr': '0.1'} and ch.data.params == {'lr': '0.2'}
    assert ch.data.tags['mlflow.parentRunId'] == p.info.run_id
    # MLflow's SQL stores keep +inf as the largest float, and read it back so
    assert p.data.metrics['big'] == sys.float_info.max and p.data.metrics['loss'] == 0.3 and ch.data.metrics == {'acc': 0.9}
    hist = [(m.step, m.value) for m in sorted(c.get_metric_history(p.info.run_id, 'loss'), key=lambda m: m.step)]
    assert hist[:2] == [(0, 0.5), (1, 0.4)] and math.isnan(hist[2][1]) and hist[3] == (3, 0.3)
    arts = [a.path for a in c.list_artifacts(p.info.run_id, 'reports')]
    assert arts == ['reports/report.txt']
    got = c.download_artifacts(p.info.run_id, 'reports/report.txt', str(project/'dl'))
    assert Path(got).read_text() == 'the report'
    assert out['kept'] is not None  # refusals: the journal is kept for inspection


def test_applying_again_adds_nothing(store, project):
    "Idempotent replay: the state file lost after applying, the same journal applied again."
    s, backend, c = store
    path = write_journal(s, project)
    data = path.read_bytes()
    apply_journal(path, backend, s)
    (path.with_suffix('.state')).unlink()
    apply_journal(path, backend, s, final=True)
    exp = c.get_experiment_by_name('contract')
    runs = c.search_runs([exp.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ['child', 'renamed']  # found by their journal tag, not created twice
    parent = next(r for r in runs if r.info.run_name == 'renamed')
    assert len(c.get_metric_history(parent.info.run_id, 'loss')) == 4
    assert data  # the journal was a real one


def test_runs_are_found_by_their_tags_and_read_back_as_mlflow_reads_them(store, project):
    "`find_runs` (all tags must match, newest first) and `read_run` (latest metrics) agree with MLflow's `get_run`."
    s, backend, c = store
    apply_journal(write_journal(s, project), backend, s, final=True)
    exp = c.get_experiment_by_name('contract')
    runs = {r.info.run_name: r for r in c.search_runs([exp.experiment_id])}
    p, ch = runs['renamed'], runs['child']
    assert backend.find_runs({'team': 'churn', 'mlflow.user': 'ana'}) == [p.info.run_id]
    assert backend.find_runs({'team': 'churn', 'mlflow.user': 'bob'}) == []
    assert backend.find_runs({'mlflow.parentRunId': p.info.run_id}) == [ch.info.run_id]
    for r in (p, ch):
        got = backend.read_run(r.info.run_id)
        assert got == dict(status=r.info.status, params=dict(r.data.params), tags=dict(r.data.tags), metrics=dict(r.data.metrics))
    assert backend.read_run(p.info.run_id)['metrics'] == {'loss': 0.3, 'big': sys.float_info.max}
    c.delete_run(ch.info.run_id)
    assert backend.find_runs({'mlflow.parentRunId': p.info.run_id}) == []  # deleted runs are not found
