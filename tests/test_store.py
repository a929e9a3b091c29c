"""The embedded store: a copied template is a store MLflow accepts, made fast, never clobbered."""
import json, sqlite3, subprocess, sys
from contextlib import closing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from mlops_nb.core.config import resolve_settings
from mlops_nb.core.errors import StoreError
from mlops_nb.store.client import ensure_store, open_client, experiment_id, template_path, build_template


def rows(db, sql):
    with closing(sqlite3.connect(db)) as c: return c.execute(sql).fetchall()


def test_new_project_gets_a_store_and_artifact_folder(project):
    info = ensure_store(resolve_settings())
    assert info.created and info.db_path == project/'.mlops'/'mlflow.db'
    assert (project/'.mlops'/'artifacts').is_dir()
    assert (project/'.mlops'/'.gitignore').read_text().strip().endswith('*')


def test_copy_is_at_mlflows_head_revision_with_mlflows_schema(project, tmp_path):
    "The copy must be exactly what MLflow would have made: same migration head, same tables, same default experiment."
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    s = resolve_settings()
    ours = ensure_store(s).db_path
    theirs = tmp_path/'theirs.db'
    SqlAlchemyStore(f"sqlite:///{theirs}", s.artifact_root).engine.dispose()
    head = ScriptDirectory.from_config(_get_alembic_config(f"sqlite:///{theirs}")).get_current_head()
    assert rows(ours, "select version_num from alembic_version") == [(head,)]
    schema = "select type, name, sql from sqlite_master where name not like 'sqlite_%' order by name"
    # MLflow's own migrations list a table's constraints in a per-process (hash-seeded) order: compare them as sets
    norm = lambda db: [(t, n, sorted(l.strip().rstrip(',') for l in (sql or '').splitlines())) for t, n, sql in rows(db, schema)]
    assert norm(ours) == norm(theirs)
    default = "select experiment_id, name, artifact_location, lifecycle_stage from experiments"
    assert rows(ours, default) == rows(theirs, default)


@pytest.mark.integration
def test_mlflow_opens_the_copy_without_migrating_and_can_use_it(project):
    s = resolve_settings()
    ensure_store(s)
    code = f"""
import logging, mlflow, json
seen = []
class H(logging.Handler):
    def emit(self, r): seen.append(r.getMessage())
logging.getLogger('mlflow.store.db.utils').addHandler(H()); logging.getLogger('mlflow.store.db.utils').setLevel(logging.INFO)
c = mlflow.MlflowClient({s.tracking_uri!r})
eid = c.create_experiment('e', artifact_location={s.artifact_root + '/e'!r})
r = c.create_run(eid); rid = r.info.run_id
c.log_param(rid, 'p', 1); c.log_metric(rid, 'm', 0.25, step=3); c.set_terminated(rid)
found = c.search_runs([eid], filter_string='metrics.m < 0.5')
print(json.dumps(dict(migrations=[m for m in seen if 'Creating initial' in m or 'Updating database' in m],
                      found=[x.info.run_id for x in found], rid=rid, default=c.get_experiment('0').name)))
"""
    out = json.loads(subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout)
    assert out['migrations'] == []  # MLflow's schema check passed: no migration ran on open
    assert out['found'] == [out['rid']] and out['default'] == 'Default'


def test_second_call_keeps_the_existing_store(project):
    s = resolve_settings()
    client = open_client(s)
    eid = experiment_id(client, s, 'keep-me')
    assert ensure_store(s).created is False
    assert open_client(s).get_experiment(eid).name == 'keep-me'


@pytest.mark.integration
def test_making_a_store_does_not_import_mlflow_once_the_template_exists(project, cache_dir):
    ensure_store(resolve_settings(project_dir=project))  # template now in the session cache
    other = project.parent/'other'; other.mkdir()
    code = ("import sys, mlops_nb.store.client as st, mlops_nb.core.config as c;"
            f"i = st.ensure_store(c.resolve_settings(project_dir={str(other)!r}));"
            "print(i.created, 'mlflow' in sys.modules, 'sqlalchemy' in sys.modules)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ['True', 'False', 'False']


def _make(args):
    project, cache = args
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.store.client import ensure_store
    return ensure_store(resolve_settings(project_dir=project, env={}, cache_dir=cache)).created


def test_processes_racing_to_create_one_store_end_with_one_valid_store(tmp_path):
    "Four kernels started at once in a new project with an empty cache: one creates, all succeed, template built once or atomically."
    project, cache = tmp_path/'p', tmp_path/'cache'
    project.mkdir()
    with ProcessPoolExecutor(4) as ex: created = list(ex.map(_make, [(str(project), str(cache))]*4))
    assert created.count(True) == 1
    db = project/'.mlops'/'mlflow.db'
    assert rows(db, "select name from experiments") == [('Default',)]
    assert rows(db, "pragma integrity_check") == [('ok',)]
    leftovers = [p.name for p in [*(project/'.mlops').iterdir(), *(cache/'store-templates').iterdir()] if p.name.endswith('.tmp')]
    assert leftovers == []


def test_a_non_sqlite_file_where_the_store_should_be_is_not_overwritten(project):
    (project/'.mlops').mkdir(); db = project/'.mlops'/'mlflow.db'
    db.write_text('my notes')
    with pytest.raises(StoreError, match="is not an SQLite database"): ensure_store(resolve_settings())
    assert db.read_text() == 'my notes'


def test_unwritable_cache_is_reported_with_the_fix(project):
    (project/'cachefile').write_text('x')
    s = resolve_settings(cache_dir=str(project/'cachefile'))
    with pytest.raises(StoreError, match="Set `cache_dir`"): ensure_store(s)


def test_out_of_date_store_says_how_to_upgrade(project):
    s = resolve_settings()
    db = ensure_store(s).db_path
    with closing(sqlite3.connect(db)) as c, c: c.execute("update alembic_version set version_num='0584bdc529eb'")
    with pytest.raises(StoreError) as e: open_client(s)
    assert "mlflow db upgrade" in str(e.value)


def test_new_experiments_keep_artifacts_in_the_project(project, tmp_path, monkeypatch):
    s = resolve_settings()
    monkeypatch.chdir(tmp_path)  # the kernel's folder must not decide where artifacts go
    client = open_client(s)
    eid = experiment_id(client, s, 'churn model / v2')
    loc = client.get_experiment(eid).artifact_location
    assert loc.startswith(str(project/'.mlops'/'artifacts')) and ' ' not in loc and '/v2' not in loc.split('artifacts/')[1]
    assert experiment_id(client, s, 'churn model / v2') == eid
    run = client.create_run(eid)
    client.log_text(run.info.run_id, 'hello', 'note.txt')
    assert list((project/'.mlops'/'artifacts').rglob('note.txt'))
    assert not (tmp_path/'mlruns').exists()


def test_deleted_experiment_is_reported_not_silently_reused(project):
    s = resolve_settings()
    client = open_client(s)
    client.delete_experiment(experiment_id(client, s, 'gone'))
    with pytest.raises(StoreError, match="is deleted"): experiment_id(client, s, 'gone')


def test_template_is_keyed_by_mlflow_version(cache_dir):
    import mlflow
    assert template_path(cache_dir).name == f"mlflow-{mlflow.__version__}.db"
