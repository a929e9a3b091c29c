"""The tracker's promises: the caller never waits on the store, nothing journaled is lost, replay is idempotent."""
import json, os, socket, subprocess, sys, textwrap, time
from pathlib import Path

import pytest

import mlops_nb as mn
from mlops_nb import tracking
from mlops_nb.config import resolve_settings
from mlops_nb.errors import TrackingError
from mlops_nb.journal import Journal, read_journal, read_state
from mlops_nb.store import open_client
from mlops_nb.tracker import Tracker, replay_journals


@pytest.fixture
def settings(project):
    return resolve_settings()


@pytest.fixture(autouse=True)
def fresh_tracking_state():
    "Each test gets its own process-wide tracker; none is left running."
    yield
    tracking._State.runs.clear()
    if tracking._State.tracker: tracking._State.tracker.close(timeout=5)
    tracking._State.tracker = None
    tracking._State.replayed.clear()


def dead_url():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return f"http://127.0.0.1:{s.getsockname()[1]}"


def metric_rows(db, run_id):
    import sqlite3
    from contextlib import closing
    with closing(sqlite3.connect(db)) as c:
        # the metrics the test logged: a run's own usage/* accounting (logged at its end) is left out
        return c.execute("select count(*) from metrics where run_uuid=? and key not like 'usage/%'", (run_id,)).fetchone()[0]


def test_caller_does_not_wait_for_a_dead_server(project):
    s = resolve_settings(tracking_uri=dead_url())
    t = Tracker(s)
    rid = t.new_run_id()
    t.record('start', run=rid, experiment='e', name='n', tags={}, t=time.time())
    t0 = time.perf_counter()
    for i in range(5000): t.log_metric(rid, 'loss', i, step=i)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0, f"5000 calls took {elapsed:.2f} s with the server down"
    time.sleep(1.0)
    assert t.store_ok is False and 'no tracking server answers' in t.last_error
    assert t.backlog == 5001
    lines = [r for _, r in read_journal(t.journal.path)]
    assert len([r for r in lines if type(r) is tuple]) == 5000  # every call is journaled
    t.close(timeout=1)
    assert t.journal.path.exists()  # not drained: kept for replay


def test_journal_of_a_process_that_exited_with_the_server_down_is_replayed_later(project):
    down = resolve_settings(tracking_uri=dead_url())
    code = textwrap.dedent(f"""
        import mlops_nb as mn
        from mlops_nb.config import resolve_settings
        s = resolve_settings(tracking_uri={down.tracking_uri!r})
        mn.track('offline', name='while-down', settings=s, system_metrics=None)
        for i in range(300): mn.log_metric('m', i, step=i)
        mn.log_param('p', 'v')
    """)
    subprocess.run([sys.executable, '-c', code], check=True, timeout=60, cwd=project)
    (journal,) = (project/'.mlops'/'journal').glob('*.log')
    # the server "comes back": replay the same journal into the embedded store
    (summary,) = replay_journals(resolve_settings())
    assert summary['records'] >= 302 and summary['killed'] == []  # it ended FINISHED at exit, so not KILLED
    run = open_client(resolve_settings()).get_run(summary['runs'][0])
    assert run.info.status == 'FINISHED' and run.data.params == {'p': 'v'} and run.data.metrics['m'] == 299
    assert metric_rows(project/'.mlops'/'mlflow.db', run.info.run_id) == 300
    assert not journal.exists()


def test_replay_is_idempotent_when_part_was_already_applied(project, settings):
    j = Journal(project/'.mlops'/'journal', 'crashed')
    j.write_json(op='start', run='r1', experiment='e', name='x', tags={}, t=time.time())
    for i in range(50): j.write(f"M\tr1\tm\t{i}\t{1000+i}\t{i}\n".encode())
    j.close()
    first = replay_journals(settings)[0]
    run_id = first['runs'][0]
    # the same journal again, as if the state file had been lost after applying it
    j = Journal(project/'.mlops'/'journal', 'crashed')
    j.write_json(op='start', run='r1', experiment='e', name='x', tags={}, t=time.time())
    for i in range(50): j.write(f"M\tr1\tm\t{i}\t{1000+i}\t{i}\n".encode())
    j.close()
    second = replay_journals(settings)[0]
    assert second['runs'] == [run_id]  # found by its journal tag, not created twice
    assert metric_rows(project/'.mlops'/'mlflow.db', run_id) == 50


def test_torn_last_line_is_ignored(project, settings):
    j = Journal(project/'.mlops'/'journal', 'torn')
    j.write_json(op='start', run='r1', experiment='e', name='x', tags={}, t=time.time())
    j.write(b"M\tr1\tm\t1.0\t1000\t0\n"); j.close()
    with open(j.path, 'ab') as f: f.write(b"M\tr1\tm\t2.")
    (s,) = replay_journals(settings)
    assert metric_rows(project/'.mlops'/'mlflow.db', s['runs'][0]) == 1


def test_values_the_store_refuses_are_set_aside_not_retried_forever(project, settings):
    t = Tracker(settings)
    rid = t.new_run_id()
    t.record('start', run=rid, experiment='e', name='n', tags={}, t=time.time())
    t.log_metric(rid, 'ok', 1.0)
    t.record('tag', run=rid, key='x' * 300, value='v')  # MLflow refuses a 300-character tag key
    t.log_metric(rid, 'after', 2.0)
    assert t.flush(30)
    assert any('log_batch' in r[0] for r in t._applier.rejected)
    assert open_client(settings).get_run(t.store_run_id(rid)).data.metrics == {'ok': 1.0, 'after': 2.0}
    t.close()


def test_param_changing_value_fails_at_the_call(project, settings):
    run = mn.track('e', settings=settings, system_metrics=None)
    mn.log_param('lr', 0.1)
    mn.log_param('lr', 0.1)  # the same value again is fine
    with pytest.raises(TrackingError, match="already logged as '0.1'"): mn.log_param('lr', 0.2)
    mn.stop()


def test_logging_without_a_run_says_how_to_start_one(project):
    with pytest.raises(TrackingError, match="%mlops track"): mn.log_metric('x', 1)


def test_bad_metric_names_and_statuses(project, settings):
    mn.track('e', settings=settings, system_metrics=None)
    with pytest.raises(TrackingError, match="Bad metric name"): mn.log_metric('a\tb', 1)
    with pytest.raises(TrackingError, match="Use one of FINISHED, FAILED, KILLED"): mn.stop('DONE')
    mn.stop()


def test_double_track_stops_the_first_run_and_resume_continues_it(project, settings):
    first = mn.track('e', name='one', settings=settings, system_metrics=None)
    mn.log_metric('m', 1)
    second = mn.track('e', name='two', system_metrics=None)
    assert second.replaced is first and first.status == 'FINISHED' and mn.active_run() is second
    mn.stop()
    assert mn.sync(30)
    resumed = mn.track(resume=first.run_id, system_metrics=None)
    mn.log_metric('m', 2, step=1)
    mn.stop()
    assert mn.sync(30)
    c = open_client(settings)
    assert [m.value for m in c.get_metric_history(first.run_id, 'm')] == [1.0, 2.0]
    assert c.get_run(first.run_id).info.status == 'FINISHED' and resumed.run_id == first.run_id


def test_artifact_is_copied_at_log_time(project, settings):
    mn.track('e', settings=settings, system_metrics=None)
    f = project/'report.txt'; f.write_text('v1')
    mn.log_artifact(f, 'reports')
    f.write_text('v2 written after logging')
    run = mn.stop(); assert mn.sync(30)
    path = open_client(settings).download_artifacts(run.run_id, 'reports/report.txt', str(project/'dl'))
    assert Path(path).read_text() == 'v1'


def test_system_metrics_are_sampled_into_the_run(project, settings):
    mn.track('e', settings=settings, system_metrics=0.2)
    time.sleep(1.0)
    run = mn.stop(); assert mn.sync(30)
    metrics = open_client(settings).get_run(run.run_id).data.metrics
    assert {'system/cpu_percent', 'system/memory_percent', 'system/process_rss_mb'} <= set(metrics)


def test_load_ext_imports_no_heavy_package_on_the_callers_thread(project):
    "Any import of mlflow & co during %load_ext must happen on the warm-up thread, never on the kernel's."
    code = textwrap.dedent("""
        import sys, threading, time, importlib.abc
        heavy = ('mlflow', 'papermill', 'lightgbm', 'plotly', 'pandas', 'sqlalchemy', 'datasketches', 'scipy', 'ipywidgets', 'whylogs')
        seen = []
        class Spy(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split('.')[0] in heavy: seen.append((name, threading.current_thread().name))
        sys.meta_path.insert(0, Spy())
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        t = time.perf_counter(); ip.run_line_magic('load_ext', 'mlops_nb'); dt = time.perf_counter() - t
        on_main = [n for n, th in seen if th == 'MainThread']
        time.sleep(8)
        print(dt, on_main, 'mlflow' in sys.modules)
    """)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120, check=True).stdout.split(maxsplit=1)
    dt, rest = float(out[0]), out[1]
    assert rest.strip() == "[] True", rest  # nothing heavy on the main thread; mlflow warmed up in the background
    assert dt < 1.0  # the 150 ms target is measured in benchmarks/, not asserted here


def test_cell_history_in_a_real_ipython_shell(project, settings):
    from IPython.core.interactiveshell import InteractiveShell
    ip = InteractiveShell.instance()
    ip.run_line_magic('load_ext', 'mlops_nb')
    tracking._tracker(settings)
    ip.run_cell('%mlops track --experiment cells --system-metrics 0')
    ip.run_cell('x = 1')
    ip.run_cell('1/0')
    ip.run_cell('x = 1')
    run = mn.active_run()
    ip.run_cell('%mlops stop')
    assert mn.sync(30)
    tags = open_client(settings).get_run(run.run_id).data.tags
    assert tags['mlops_nb.errors'] == '1' and tags['mlops_nb.reruns'] == '1' and int(tags['mlops_nb.cells_run']) >= 3
    arts = {a.path for a in open_client(settings).list_artifacts(run.run_id, 'notebook')}
    assert {'notebook/cells.json', 'notebook/executed.ipynb'} <= arts


def test_embedded_fast_path_reads_back_exactly_like_mlflows_log_batch(project, settings):
    "Same metrics through our SQLite fast path and through MLflow's log_batch: MLflow's API must read identical data."
    import math
    from mlflow.entities import Metric
    samples = [('loss', 0.5, 1000, 0), ('loss', 0.4, 1001, 1), ('loss', 0.45, 999, 1), ('loss', 0.3, 1002, 3),
               ('loss', 0.35, 1003, 2), ('acc', float('nan'), 1000, 5), ('acc', 0.9, 1000, 4),
               ('big', float('inf'), 10, 0), ('small', float('-inf'), 10, 0), ('loss', 0.3, 1002, 3)]  # last: a duplicate
    t = Tracker(settings)
    rid = t.new_run_id()
    t.record('start', run=rid, experiment='fast', name='ours', tags={}, t=time.time())
    for k, v, ts, step in samples: t.log_metric(rid, k, v, step=step, timestamp=ts)
    assert t.flush(30) and t._applier.fast is not None
    c = open_client(settings)
    theirs = c.create_run(c.get_experiment_by_name('fast').experiment_id).info.run_id
    c.log_batch(theirs, metrics=[Metric(k, v, ts, step) for k, v, ts, step in samples])
    ours = t.store_run_id(rid)
    norm = lambda d: {k: ('nan' if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}
    assert norm(c.get_run(ours).data.metrics) == norm(c.get_run(theirs).data.metrics)
    hist = lambda r, k: sorted((m.step, m.timestamp, 'nan' if math.isnan(m.value) else m.value) for m in c.get_metric_history(r, k))
    for key in ('loss', 'acc', 'big', 'small'): assert hist(ours, key) == hist(theirs, key), key
    assert len(c.get_metric_history(ours, 'loss')) == 5  # the duplicate was dropped, as MLflow drops it
    t.close()
