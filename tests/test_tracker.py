"""The tracker and the sync: every call is journaled by the caller, applied by the project's sync process (or by a reader),
with damage and refusals set aside and reported, never blocking what comes after."""
import json, os, socket, sqlite3, subprocess, sys, textwrap, time
from contextlib import closing
from pathlib import Path

import pytest

import mlops_nb as mn
from mlops_nb.tracking import runs as tracking
from mlops_nb.core.config import resolve_settings
from mlops_nb.core.errors import TrackingError
from mlops_nb.tracking.journal import Journal, metric_line, json_line, read_journal, store_key
from mlops_nb.store.client import open_client
from mlops_nb.tracking.recorder import Tracker
from mlops_nb.tracking.sync import replay_journals, sync_report, journal_folder
from _resilience_helpers import wait_until
from conftest import mlops_nb_cli
from mlops_nb.core.names import meta_of

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(project):
    return resolve_settings()


@pytest.fixture(autouse=True)
def fresh_tracking_state():
    "Each test gets its own process-wide tracker; none is left running."
    yield
    tracking._State.runs.clear()
    if tracking._State.tracker: tracking._State.tracker.close()
    tracking._State.tracker = None
    tracking._State.replayed.clear()
    tracking._State.fate = None


def dead_url():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return f"http://127.0.0.1:{s.getsockname()[1]}"


def metric_rows(db, run_id):
    with closing(sqlite3.connect(db)) as c:
        # the metrics the test logged: a run's own usage accounting (system/run_*, logged at its end) is left out
        return c.execute("select count(*) from metrics where run_uuid=? and key not like 'system/run%'", (run_id,)).fetchone()[0]


def journal(settings, name=None):
    "A journal for the project's store, as a tracker would write it."
    return Journal(journal_folder(settings), name, store=store_key(settings.tracking_uri))


@pytest.mark.integration
def test_caller_does_not_wait_for_a_dead_server(project):
    s = resolve_settings(tracking_uri=dead_url())
    t = Tracker(s)
    rid = t.new_run_id()
    t.record('start', run=rid, experiment='e', name='n', tags={}, t=time.time())
    t0 = time.perf_counter()
    for i in range(5000): t.log_metric(rid, 'loss', i, step=i)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0, f"5000 calls took {elapsed:.2f} s with the server down"
    # the sync process, started by the tracker, finds the server down and says so
    ok, err = wait_until(lambda: (h := t.health())[0] is False and h, 60, what='the sync process to report the dead server')
    assert 'no tracking server answers' in err, err
    assert t.backlog == t.journal.offset  # nothing applied
    t.close()
    lines = [r for _, r in read_journal(t.journal.path)]
    assert len([r for r in lines if type(r) is tuple]) == 5000  # every call is journaled, and kept for later


@pytest.mark.integration
def test_journal_of_a_process_that_exited_before_the_store_had_it_is_applied_by_sync(project):
    code = textwrap.dedent("""
        import mlops_nb as mn
        mn.track('offline', name='gone', system_metrics=None)
        for i in range(300): mn.log_metric('m', i, step=i)
        mn.log_param('p', 'v')
    """)
    # MLOPS_NB_SYNC_DELAY: someone else (here: the test) applies the journal, as `mlops-nb run` does for its kernels
    subprocess.run([sys.executable, '-c', code], check=True, timeout=60, cwd=project, env=os.environ | {'MLOPS_NB_SYNC_DELAY': '1'})
    (journal_file,) = (project/'.mlops'/'journal').glob('*.log')
    (summary,) = replay_journals(resolve_settings())
    assert summary['killed'] == []  # it ended FINISHED at exit, so not KILLED
    run = open_client(resolve_settings()).get_run(summary['runs'][0])
    assert run.info.status == 'FINISHED' and run.data.params == {'p': 'v'} and run.data.metrics['m'] == 299
    assert metric_rows(project/'.mlops'/'mlflow.db', run.info.run_id) == 300
    assert not journal_file.exists()  # applied in full and retired


def test_replay_is_idempotent_when_the_state_was_lost(project, settings):
    def write():
        j = journal(settings, 'crashed')
        j.write_json(op='start', run='r1', experiment='e', name='x', tags={}, t=time.time())
        for i in range(50): j.write(metric_line('r1', 'm', i, 1000 + i, i))
        j.close()
    write()
    run_id = replay_journals(settings)[0]['runs'][0]
    write()  # the same journal again, as if its state file had been lost after applying it
    assert replay_journals(settings)[0]['runs'] == [run_id]  # found by its journal tag, not created twice
    assert metric_rows(project/'.mlops'/'mlflow.db', run_id) == 50


@pytest.mark.integration
@pytest.mark.parametrize('damage', ['truncated', 'hole of zeros', 'garbage bytes', 'malformed field', 'refused record', 'then a healthy journal'])
def test_every_intact_record_lands_whatever_the_damage(project, settings, damage):
    "Each class of damage: the intact records all land, sync reports the damage, the journal is kept for inspection."
    j = journal(settings, '20261201T000000-1-aaaaaaaa-' + store_key(settings.tracking_uri))
    j.write_json(op='start', run='r1', experiment='damage', name='r1', tags={}, t=time.time())
    for i in range(2000): j.write(metric_line('r1', 'm', float(i), 1000 + i, i))
    j.write_json(op='end', run='r1', status='FINISHED', t=time.time())
    j.close()
    data = bytearray(j.path.read_bytes())
    lines = data.split(b'\n')
    offsets = [0]
    for line in lines[:-1]: offsets.append(offsets[-1] + len(line) + 1)
    hit = set()  # metric steps whose lines the damage touches
    def touched(a, b):
        for k in range(len(offsets) - 1):  # line k: 0 `open`, 1 `start`, 2..2001 the metrics of steps 0..1999, then `end`
            if offsets[k] < b and offsets[k + 1] > a and 2 <= k <= 2001: hit.add(k - 2)
    if damage == 'truncated':  # the last line is cut short and the end record is gone
        data = data[:offsets[2002] - 7]; touched(offsets[2001], offsets[2002])
    elif damage == 'hole of zeros':
        data[20000:24096] = bytes(4096); touched(20000, 24096)
    elif damage == 'garbage bytes':
        data[30000:30020] = b'\xff\xfe\x00garbage\n\tM\txx'; touched(30000, 30020)
    elif damage == 'malformed field':
        bad = b'M\tr1\tm\tnot-a-number\t1\t1'
        import zlib
        data += bad + b'\t%08x\n' % zlib.crc32(bad)  # even with a right checksum: the value does not parse
    elif damage == 'refused record':
        data += json_line(dict(op='tag', run='r1', key='x' * 300, value='v'))  # MLflow refuses a 300-character key
    j.path.write_bytes(bytes(data))
    if damage == 'then a healthy journal':
        with open(j.path, 'r+b') as f: f.seek(5000); f.write(b'\0' * 100)
        touched(5000, 5100)
        h = journal(settings, '20261201T000001-2-bbbbbbbb-' + store_key(settings.tracking_uri))
        h.write_json(op='start', run='r1', experiment='damage', name='healthy', tags={}, t=time.time())
        for i in range(100): h.write(metric_line('r1', 'm', float(i), 1000 + i, i))
        h.write_json(op='end', run='r1', status='FINISHED', t=time.time()); h.close()
    r = mlops_nb_cli('sync', cwd=project)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'Traceback' not in r.stdout + r.stderr
    db = project/'.mlops'/'mlflow.db'
    with closing(sqlite3.connect(db)) as c:
        (rid,) = c.execute("select run_uuid from runs where name='r1'").fetchone()
        steps = {s for (s,) in c.execute("select step from metrics where run_uuid=? and key='m'", (rid,))}
        if damage == 'then a healthy journal':
            (hid,) = c.execute("select run_uuid from runs where name='healthy'").fetchone()
            assert c.execute("select count(*), max(status) from metrics m join runs r on r.run_uuid=m.run_uuid where r.run_uuid=?", (hid,)).fetchone() == (100, 'FINISHED')
    assert steps == set(range(2000)) - hit, f"lost intact records: {sorted(set(range(2000)) - hit - steps)[:10]}"
    assert hit or damage in ('malformed field', 'refused record')
    out = r.stdout
    if damage == 'refused record':
        assert 'refused by the store' in out and 'x' * 50 in out, out
    else:
        assert 'kept in .mlops/journal/kept/' in out and 'damaged' in out, out
    rep = sync_report(settings)
    assert len(rep['kept']) == 1 and rep['kept'][0]['journal'].startswith('20261201T000000')


def test_a_run_the_store_refuses_does_not_block_later_runs(project, settings):
    "A `--resume` id the store does not have: that run is set aside with the reason; the next run in the same kernel lands."
    t = Tracker(settings, start_sync=False)
    a, b = t.new_run_id(), t.new_run_id()
    t.record('start', run=a, experiment='e', name='bad', tags={}, resume='0' * 32, t=time.time())
    t.log_metric(a, 'm', 1.0)
    t.record('start', run=b, experiment='e', name='good', tags={}, t=time.time())
    t.log_metric(b, 'm', 2.0)
    t.record('end', run=b, status='FINISHED', t=time.time())
    assert t.flush(60)
    assert open_client(settings).get_run(t.store_run_id(b)).data.metrics == {'m': 2.0}
    assert 'not found' in t.refused(a)
    rep = sync_report(settings)
    assert rep['rejected'] == 2 and {r['op'] for r in rep['last_rejected']} == {'start', 'metric'}
    t.close()


@pytest.mark.integration
def test_arguments_the_store_would_refuse_are_refused_at_the_call(project, settings):
    with pytest.raises(TrackingError, match="500 characters"): mn.track('x' * 600, settings=settings, system_metrics=None)
    with pytest.raises(TrackingError, match="32 hexadecimal"): mn.track(resume='not-a-run-id', settings=settings, system_metrics=None)
    with pytest.raises(TrackingError, match="positive number"): mn.track('e', settings=settings, system_metrics=-5)
    mn.track('e', settings=settings, system_metrics=None)
    f = project/'a.txt'; f.write_text('x')
    with pytest.raises(TrackingError, match="leaves the run"): mn.log_artifact(f, '../outside')
    with pytest.raises(TrackingError, match="not a number"): mn.log_metric('m', 'abc')
    mn.stop()


@pytest.mark.integration
def test_param_changing_value_fails_at_the_call(project, settings):
    mn.track('e', settings=settings, system_metrics=None)
    mn.log_param('lr', 0.1)
    mn.log_param('lr', 0.1)  # the same value again is fine
    with pytest.raises(TrackingError, match="already logged as '0.1'"): mn.log_param('lr', 0.2)
    mn.stop()


def test_logging_without_a_run_says_how_to_start_one(project):
    with pytest.raises(TrackingError, match="%mlops track"): mn.log_metric('x', 1)


@pytest.mark.integration
def test_bad_metric_names_and_statuses(project, settings):
    mn.track('e', settings=settings, system_metrics=None)
    with pytest.raises(TrackingError, match="Bad metric name"): mn.log_metric('a\tb', 1)
    with pytest.raises(TrackingError, match="Use one of FINISHED, FAILED, KILLED"): mn.stop('DONE')
    mn.stop()


@pytest.mark.integration
def test_a_read_right_after_stop_sees_everything(project, settings):
    run = mn.track('e', name='ryw', settings=settings, system_metrics=None)
    for i in range(100): mn.log_metric('m', i, step=i)
    mn.stop()
    got = mn.load_run(run.wait_for_id(30))  # no sync, no sleep
    assert got.status == 'FINISHED' and got.metrics['m'] == 99
    assert 'system/run_wall_seconds' in got.metrics and 'system/run_cpu_seconds' in got.metrics


@pytest.mark.integration
def test_double_track_stops_the_first_run_and_resume_continues_it(project, settings):
    first = mn.track('e', name='one', settings=settings, system_metrics=None)
    mn.log_metric('m', 1)
    second = mn.track('e', name='two', system_metrics=None)
    assert second.replaced is first and first.status == 'FINISHED' and mn.active_run() is second
    mn.stop()
    resumed = mn.track(resume=first.wait_for_id(30), system_metrics=None)
    mn.log_metric('m', 2, step=1)
    mn.stop()
    c = open_client(settings)
    assert [m.value for m in c.get_metric_history(first.run_id, 'm')] == [1.0, 2.0]
    assert c.get_run(first.run_id).info.status == 'FINISHED' and resumed.run_id == first.run_id


@pytest.mark.integration
def test_seed_belongs_to_its_run(project, settings):
    a = mn.track('e', name='seeded', settings=settings, system_metrics=None); mn.seed(7); mn.stop()
    b = mn.track('e', name='unseeded', system_metrics=None); mn.stop()
    mn.seed(3)  # before a run: it goes to the next run, once
    c_ = mn.track('e', name='next', system_metrics=None); mn.stop()
    d = mn.track('e', name='after', system_metrics=None); mn.stop()
    c = open_client(settings)
    tags = {r.name: meta_of(c.get_run(r.wait_for_id(30)).data.tags).get('seed') for r in (a, b, c_, d)}
    assert tags == {'seeded': '7', 'unseeded': None, 'next': '3', 'after': None}


@pytest.mark.integration
def test_artifact_is_copied_at_log_time(project, settings):
    mn.track('e', settings=settings, system_metrics=None)
    f = project/'report.txt'; f.write_text('v1')
    mn.log_artifact(f, 'reports')
    f.write_text('v2 written after logging')
    run = mn.stop()
    path = open_client(settings).download_artifacts(run.wait_for_id(30), 'reports/report.txt', str(project/'dl'))
    assert Path(path).read_text() == 'v1'


@pytest.mark.integration
def test_system_metrics_are_sampled_into_the_run(project, settings):
    run = mn.track('e', settings=settings, system_metrics=0.2)
    wait_until(lambda: run.tracker.journal.flush() and b'system/cpu_utilization_percentage' in run.tracker.journal.path.read_bytes(), 30,
               what='a system metrics sample in the journal')
    mn.stop()
    metrics = open_client(settings).get_run(run.wait_for_id(30)).data.metrics
    assert {'system/cpu_utilization_percentage', 'system/system_memory_usage_percentage', 'system/process_memory_rss_megabytes'} <= set(metrics)


@pytest.mark.integration
def test_load_ext_track_and_stop_never_import_mlflow(project):
    "Nothing of ours imports MLflow for tracking, on any thread: the user's own `import mlflow` can never race it."
    code = textwrap.dedent("""
        import sys, time
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        t = time.perf_counter(); ip.run_line_magic('load_ext', 'mlops_nb'); dt = time.perf_counter() - t
        ip.run_cell('%mlops track --experiment e --system-metrics 0.2')
        ip.run_cell('import mlops_nb as mn\\nfor i in range(100): mn.log_metric("m", i)')
        ip.run_cell('%mlops status')
        ip.run_cell('%mlops stop')
        heavy = [m for m in ('mlflow', 'papermill', 'lightgbm', 'plotly', 'sqlalchemy') if m in sys.modules]
        print(dt, heavy)
    """)
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120, cwd=project)
    assert r.returncode == 0, r.stderr
    dt, heavy = r.stdout.strip().splitlines()[-1].split(maxsplit=1)
    assert heavy == '[]', r.stdout
    assert float(dt) < 1.0  # the 150 ms target is measured in benchmarks/, not asserted here


@pytest.mark.integration
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
    c = open_client(settings)
    tags = meta_of(c.get_run(run.wait_for_id(30)).data.tags)
    assert tags['errors'] == '1' and tags['reruns'] == '1' and int(tags['cells_run']) >= 3
    arts = {a.path for a in c.list_artifacts(run.run_id, 'notebook')}
    assert {'notebook/cells.json', 'notebook/executed.ipynb'} <= arts


@pytest.mark.integration
def test_a_run_stopped_by_a_quota_says_so_at_the_next_cell_and_in_status(project, settings, capsys):
    from IPython.core.interactiveshell import InteractiveShell
    ip = InteractiveShell.instance()
    ip.run_line_magic('load_ext', 'mlops_nb')
    tracking._tracker(settings)
    ip.run_cell('%mlops track --experiment q --name budgeted --system-metrics 0')
    run = mn.active_run()
    try: tracking._quota_stop(run, 'cpu_hours: used 1.2 of 1 CPU-hours')  # what the meter's guard calls at a hard limit
    except KeyboardInterrupt: pass  # it interrupts the running cell: here, the test itself
    capsys.readouterr()
    ip.run_cell('x = 1')
    err = capsys.readouterr().err
    assert 'was stopped (FAILED): quota: cpu_hours: used 1.2 of 1 CPU-hours' in err, err
    ip.run_cell('%mlops status')
    out = capsys.readouterr().out
    assert 'FAILED: quota: cpu_hours' in out, out
    with pytest.raises(TrackingError, match="was stopped: quota"): mn.log_metric('m', 1)
    assert open_client(settings).get_run(run.wait_for_id(30)).info.status == 'FAILED'


def test_embedded_fast_path_reads_back_exactly_like_mlflows_log_batch(project, settings):
    "Same metrics through our SQLite backend and through MLflow's log_batch: MLflow's API must read identical data."
    import math
    from mlflow.entities import Metric
    samples = [('loss', 0.5, 1000, 0), ('loss', 0.4, 1001, 1), ('loss', 0.45, 999, 1), ('loss', 0.3, 1002, 3),
               ('loss', 0.35, 1003, 2), ('acc', float('nan'), 1000, 5), ('acc', 0.9, 1000, 4),
               ('big', float('inf'), 10, 0), ('small', float('-inf'), 10, 0), ('loss', 0.3, 1002, 3)]  # last: a duplicate
    t = Tracker(settings, start_sync=False)
    rid = t.new_run_id()
    t.record('start', run=rid, experiment='fast', name='ours', tags={}, t=time.time())
    for k, v, ts, step in samples: t.log_metric(rid, k, v, step=step, timestamp=ts)
    assert t.flush(30)
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
