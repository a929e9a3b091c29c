"""Tracking cost and the first hour: mlops_nb's journal-first logging vs MLflow's own client on the same kind of SQLite store.

    python benchmarks/bench_tracking.py              # ~2-3 minutes
    python benchmarks/bench_tracking.py --smoke      # every figure once, small, one fresh process of each kind (CI runs this so it cannot rot)
    python benchmarks/bench_tracking.py --first-track 20   # only the first track() figure, with MLflow's start_run as peer (~3-6 min, mostly the peer)

Per call   median and p99 of `Tracker.log_metric` and `mn.log_metric` vs MLflow's `MlflowClient.log_metric`.
                                                                          Target: ours <= 20 us median.
Sustained  the caller logs as fast as it can for `--seconds`: metrics/s, every one journaled (the lines are counted).
                                                                          Target: >= 100,000/s.
Drain      the journal applied to the store (`replay_journals`, what the sync process and a reader run) vs MLflow's
           `client.log_batch` in 1000-metric batches of the same shape.   Target: >= 90 % of MLflow's; none lost.
First hour `--processes` fresh processes in fresh project folders (issue 14):
           - the user's own `from mlflow.tracking import MlflowClient; import mlflow.sklearn` right after
             track/log/stop: failures.                                   Target: 0.
           - a short script (3 tracked runs) vs the same script untracked, in alternating pairs: exit overhead,
             median.                                                      Target: <= 0.5 s.
           - its runs in the store after it exited, with no sync command: how many, and how long after.
                                                                          Target: all, <= 5 s.
           - `load_run` right after `stop` sees the last metric and the `system/run_*` usage metrics.  Target: all.
           - the first `track()` with a quota configured, with a local store and with a dead server: median.
                                                                          Target: <= 100 ms, no exception.
           (`--first-track K` measures that one alone, alternating with MLflow's first `set_experiment` + `start_run`
           after its import, on a copy of the same store; also the caller thread's CPU time, which load does not inflate.)
Subprocesses cache their bytecode in a temp folder (PYTHONPYCACHEPREFIX), as an installed package has its .pyc files.
"""
import argparse, json, os, sqlite3, statistics, subprocess, sys, tempfile, textwrap, time
from contextlib import closing
from pathlib import Path

KEYS = [f"bench/key_{i}" for i in range(10)]


def note(msg): print(f"  .. {msg}", file=sys.stderr, flush=True)
def pct(xs, q): xs = sorted(xs); return xs[min(len(xs) - 1, int(len(xs) * q))]
def med(xs): return statistics.median(xs) if xs else float('nan')


def settings_for(root, name, cache):
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.store.client import ensure_store
    d = Path(root)/name; d.mkdir()
    s = resolve_settings(project_dir=d, env={}, cache_dir=str(cache)); ensure_store(s)
    return s


def timed_calls(fn, n, first=0):
    pc, out = time.perf_counter_ns, []
    for i in range(first, first + n):
        a = pc(); fn(KEYS[i % 10], i * 0.001, i); out.append(pc() - a)
    return out


def store_rows(s, run_id):
    with closing(sqlite3.connect(s.tracking_uri[len('sqlite:///'):])) as db:
        return db.execute("select count(*), count(distinct step), min(step), max(step) from metrics where run_uuid=?", (run_id,)).fetchone()


# -- in-process figures -------------------------------------------------------------------------------------------
def per_call_and_drain(root, cache, calls, seconds, mlflow_calls):
    from mlops_nb.tracking.recorder import Tracker
    from mlops_nb.tracking.sync import replay_journals
    from mlops_nb.store.client import open_client, experiment_id
    import mlops_nb as mn
    res = {}
    s = settings_for(root, 'calls', cache)
    t = Tracker(s, start_sync=False); rid = t.new_run_id()
    t.record('start', run=rid, experiment='bench', name='bench', tags={}, t=time.time())
    timed_calls(lambda k, v, i: t.log_metric(rid, k, v, i), 1000)
    res['Tracker.log_metric'] = timed_calls(lambda k, v, i: t.log_metric(rid, k, v, i), calls, 1000)
    t.close()
    s2 = settings_for(root, 'mn', cache)
    run = mn.track('bench', name='bench-mn', settings=s2, system_metrics=None)
    timed_calls(mn.log_metric, 1000)
    res['mn.log_metric'] = timed_calls(mn.log_metric, calls, 1000)
    mn.stop()
    c = open_client(s2); mrun = c.create_run(experiment_id(c, s2, 'bench')).info.run_id
    timed_calls(lambda k, v, i: c.log_metric(mrun, k, v, step=i), 10)
    res['MlflowClient.log_metric'] = timed_calls(lambda k, v, i: c.log_metric(mrun, k, v, step=i), mlflow_calls, 10)

    s3 = settings_for(root, 'sustained', cache)
    t = Tracker(s3, start_sync=False); rid = t.new_run_id()
    t.record('start', run=rid, experiment='bench', name='sustained', tags={}, t=time.time())
    lm, n = t.log_metric, 0
    t0 = time.perf_counter(); end = t0 + seconds
    while time.perf_counter() < end:
        for i in range(n, n + 1000): lm(rid, KEYS[i % 10], i * 0.001, i)
        n += 1000
    log_s = time.perf_counter() - t0
    t.close()
    prefix = f"M\t{rid}\t".encode()
    with open(t.journal.path, 'rb') as f: journaled = sum(1 for line in f if line.startswith(prefix))
    note(f"logged {n:,} in {log_s:.1f} s; applying")
    a = time.perf_counter(); (summary,) = replay_journals(s3); drain_s = time.perf_counter() - a
    rows = store_rows(s3, summary['runs'][0])

    from mlflow.entities import Metric
    s4 = settings_for(root, 'peer', cache); c = open_client(s4)
    prun = c.create_run(experiment_id(c, s4, 'bench')).info.run_id
    a = time.perf_counter()
    for lo in range(0, n, 1000):
        c.log_batch(prun, metrics=[Metric(KEYS[i % 10], i * 0.001, time.time_ns() // 10**6, i) for i in range(lo, min(n, lo + 1000))])
    peer_s = time.perf_counter() - a
    assert store_rows(s4, prun)[0] == n
    return res, dict(n=n, log_s=log_s, journaled=journaled, drain_s=drain_s, rows=rows, peer_s=peer_s)


# -- fresh processes ----------------------------------------------------------------------------------------------
def project(root, name, extra=''):
    d = Path(root)/name; d.mkdir(); (d/'pyproject.toml').write_text(f'[project]\nname = "bench"\n{extra}'); return d


def finished(d):
    db = d/'.mlops'/'mlflow.db'
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as c:
            return c.execute("select count(*) from runs where status='FINISHED'").fetchone()[0]
    except sqlite3.Error: return 0


def run_py(code, cwd, env=None):
    t = time.perf_counter()
    r = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    return r, time.perf_counter() - t


SHORT = "import mlops_nb as mn\n" + "mn.track(experiment='s')\nmn.log_metric('x', 1.0)\nmn.stop()\n" * 3
BASE = "import mlops_nb as mn\nx = sum(range(10**6))\n"
IMPORTS = """
import mlops_nb as mn
mn.track(experiment='x')
for i in range(500): mn.log_metric('m', i, step=i)
mn.stop()
from mlflow.tracking import MlflowClient
import mlflow.sklearn
"""
RYW = """
import mlops_nb as mn
run = mn.track(experiment='r')
for i in range(100): mn.log_metric('m', i, step=i)
mn.stop()
got = mn.load_run(run.run_id or run.wait_for_id(30))
print('RYW', got.metrics.get('m') == 99 and 'system/run_cpu_seconds' in got.metrics and 'system/run_wall_seconds' in got.metrics)
"""
QUOTA = """
import time, mlops_nb as mn
t, c = time.perf_counter(), time.thread_time(); mn.track(experiment='q', system_metrics=None); dt, dc = time.perf_counter() - t, time.thread_time() - c
mn.stop(); print('TRACK', dt, dc)
"""
MLFLOW_START = """
import shutil, sys, time, mlflow
shutil.copyfile(sys.argv[1], 'peer.db')
t, c = time.perf_counter(), time.thread_time()
mlflow.set_tracking_uri('sqlite:///peer.db'); mlflow.set_experiment('q'); mlflow.start_run()
dt, dc = time.perf_counter() - t, time.thread_time() - c
mlflow.end_run(); print('TRACK', dt, dc)
"""
QUOTA_TOML = '[tool.mlops_nb.quota]\nwindow = "7d"\ncpu_hours = 100\n'
DEAD_SERVER = '[tool.mlops_nb]\ntracking_uri = "http://127.0.0.1:9"\n'


SMOKE = False  # --smoke: the children use the bytecode pip installed, instead of compiling MLflow's afresh into a temp folder


def child_env(root):
    "The subprocesses' environment: no MLOPS_NB_/MLFLOW_ settings; bytecode cached in a temp folder, as an install has its .pyc."
    env = {k_: v for k_, v in os.environ.items() if not k_.startswith(('MLOPS_NB_', 'MLFLOW_'))}
    if SMOKE: return env  # compiling MLflow's and scikit-learn's bytecode once was most of the smoke run's time
    return {k_: v for k_, v in env.items() if k_ != 'PYTHONDONTWRITEBYTECODE'} | {'PYTHONPYCACHEPREFIX': str(Path(root)/'pycache')}


def first_track(root, k, template):
    "The first `track()` with a quota (local store, dead server) and MLflow's first `start_run()` (import not timed), alternating."
    env, out = child_env(root), dict(quota_local=[], quota_dead=[], mlflow=[])
    run_py(QUOTA, project(root, 'ft-warm', QUOTA_TOML), env)  # compiles the bytecode once
    for i in range(k):
        for key in list(out)[i % 3:] + list(out)[:i % 3]:
            if key == 'mlflow':
                d = project(root, f"ft-{key}{i}")
                r = subprocess.run([sys.executable, '-c', MLFLOW_START, str(template)], cwd=d, capture_output=True, text=True, timeout=300, env=env)
            else: r, _ = run_py(QUOTA, project(root, f"ft-{key}{i}", (DEAD_SERVER if key == 'quota_dead' else '') + QUOTA_TOML), env)
            out[key].append(tuple(map(float, r.stdout.split('TRACK')[1].split())) if r.returncode == 0 else (float('inf'), float('inf')))
    return out


def report_first_track(ft, k):
    ms = lambda key, i: med([x[i] for x in ft[key]]) * 1000
    peer = ms('mlflow', 0)
    print(f"\nfirst track() in a fresh process, {k} processes each, alternating  (target <= 100 ms, no exception)")
    print(f"{'':<48}{'wall':>10}{'caller CPU':>12}{'max wall':>10}{'MLflow/this':>13}")
    for key, label in (('quota_local', 'mn.track(), quota, local store'), ('quota_dead', 'mn.track(), quota, dead server'),
                       ('mlflow', "MLflow: set_experiment + start_run (peer)")):
        ok = sum(x[0] != float('inf') for x in ft[key])
        print(f"{label:<48}{ms(key, 0):>8.1f}ms{ms(key, 1):>10.1f}ms{max(x[0] for x in ft[key])*1000:>8.0f}ms{peer/ms(key, 0):>12.1f}x"
              f"   {ok}/{k} without an exception")
    print("wall: perf_counter around the call; caller CPU: the calling thread's CPU time (thread_time), which load does not inflate")


def first_hour(root, k):
    env = child_env(root)
    out = dict(imports=0, ryw=0, landed=[], overhead=[], quota_local=[], quota_dead=[], errors=[])
    for i in range(k):
        note(f"first hour: round {i + 1} of {k}")
        r, _ = run_py(IMPORTS, project(root, f"imp{i}"), env)
        out['imports'] += r.returncode == 0
        if r.returncode: out['errors'].append(r.stderr[-300:])
        r, _ = run_py(RYW, project(root, f"ryw{i}"), env)
        out['ryw'] += 'RYW True' in r.stdout
        _, tb = run_py(BASE, project(root, f"base{i}"), env)
        d = project(root, f"short{i}")
        _, tt = run_py(SHORT, d, env)
        exited = time.perf_counter()
        out['overhead'].append(tt - tb)
        deadline = exited + 30
        while time.perf_counter() < deadline and finished(d) < 3: time.sleep(0.02)
        out['landed'].append(time.perf_counter() - exited if finished(d) == 3 else None)
        for key, extra in (('quota_local', ''), ('quota_dead', DEAD_SERVER)):
            r, _ = run_py(QUOTA, project(root, f"{key}{i}", extra + QUOTA_TOML), env)
            out[key].append(float(r.stdout.split('TRACK')[1].split()[0]) if r.returncode == 0 else float('inf'))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--calls', type=int, default=20_000)
    ap.add_argument('--mlflow-calls', type=int, default=200)
    ap.add_argument('--seconds', type=float, default=10)
    ap.add_argument('--processes', type=int, default=20, help="fresh processes per first-hour figure")
    ap.add_argument('--smoke', action='store_true', help="small and quick: 2,000 calls, 0.1 s sustained, 1 process of each kind")
    ap.add_argument('--first-track', type=int, default=0, metavar='K',
                    help="only the first-track() figure: K processes each of ours (local, dead server) and MLflow's start_run")
    a = ap.parse_args()
    if a.smoke: a.calls, a.mlflow_calls, a.seconds, a.processes = 2000, 20, 0.1, 1
    global SMOKE; SMOKE = a.smoke
    if a.first_track:
        with tempfile.TemporaryDirectory(prefix='bench-tracking-', ignore_cleanup_errors=True) as root:  # sync processes may still write
            from mlops_nb.store.client import build_template, template_path
            ft = first_track(root, a.first_track, build_template(template_path(Path(root)/'cache')))
            report_first_track(ft, a.first_track)
        return 0 if all(x[0] != float('inf') for xs in ft.values() for x in xs) else 1
    import logging, warnings
    logging.getLogger('mlflow').setLevel(logging.WARNING); warnings.filterwarnings('ignore', category=DeprecationWarning)
    with tempfile.TemporaryDirectory(prefix='bench-tracking-', ignore_cleanup_errors=True) as root:  # sync processes may still write
        cache = Path(os.environ['MLOPS_NB_CACHE_DIR']) if a.smoke and os.environ.get('MLOPS_NB_CACHE_DIR') else Path(root)/'cache'  # smoke: the suite's template
        from mlops_nb.store.client import build_template, template_path
        build_template(template_path(cache))
        pc, su = per_call_and_drain(root, cache, a.calls, a.seconds, a.mlflow_calls)
        fh = first_hour(root, a.processes)

    us = lambda xs: med(xs) / 1000
    theirs = us(pc['MlflowClient.log_metric'])
    print("\nper call: one logged metric, caller side  (target: ours <= 20 us median)")
    print(f"{'':<26}{'calls':>8}{'median':>12}{'p99':>12}{'MLflow/this':>13}")
    for name, xs in pc.items():
        print(f"{name:<26}{len(xs):>8}{us(xs):>10.1f}us{pct(xs, .99)/1000:>10.1f}us{theirs/us(xs):>12.0f}x")
    n = su['n']; caller = n / su['log_s']; drain = n / su['drain_s']; peer = n / su['peer_s']
    lost = not (su['journaled'] == n and su['rows'] == (n, n, 0, n - 1))
    print(f"\nsustained caller        {caller:>12,.0f} metrics/s   (target >= 100,000/s; {n:,} metrics, journal holds {su['journaled']:,})")
    print(f"drain into the store    {drain:>12,.0f} metrics/s   {drain/peer:6.0%} of MLflow's log_batch (target >= 90 %)")
    print(f"MLflow client.log_batch {peer:>12,.0f} metrics/s   (1000-metric batches)")
    print(f"none lost: {'NO' if lost else 'yes'}  (store rows, distinct steps, min, max step = {su['rows']})")
    k = a.processes
    landed = [x for x in fh['landed'] if x is not None]
    print(f"\nfirst hour, {k} fresh processes each")
    print(f"user's mlflow import right after tracking ok   {fh['imports']}/{k}   (target {k}/{k})")
    print(f"read right after stop sees everything          {fh['ryw']}/{k}   (target {k}/{k})")
    print(f"short script (3 runs): exit overhead median    +{med(fh['overhead']):.2f} s (max +{max(fh['overhead']):.2f} s; target <= 0.5 s)")
    print(f"its runs in the store without sync             {len(landed)}/{k}, {med(landed):.2f} s median / {max(landed, default=float('nan')):.2f} s max after exit (target all, <= 5 s)")
    print(f"first track() with a quota: local store        {med(fh['quota_local'])*1000:.0f} ms median (target <= 100 ms)")
    print(f"first track() with a quota: dead server        {med(fh['quota_dead'])*1000:.0f} ms median, "
          f"{sum(x != float('inf') for x in fh['quota_dead'])}/{k} without an exception (target <= 100 ms, {k}/{k})")
    for e in fh['errors'][:3]: print("  import failure:", e.strip().splitlines()[-1])
    ok = not lost and fh['imports'] == k and fh['ryw'] == k and len(landed) == k
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
