"""Tracking cost: mlops_nb's journal-first logging vs MLflow's own client on the same kind of SQLite store, in one run.

    python benchmarks/bench_tracking.py [--calls 20000] [--mlflow-calls 200] [--seconds 10] [--peer-metrics 0]

The issue's full-length sustained figure is `--seconds 60` (the drain afterwards and MLflow's peer run take several
minutes more: both go at MLflow's `log_batch` speed).

Per call  median and p99 of `Tracker.log_metric`, of `mn.log_metric`, and of MLflow's `MlflowClient.log_metric`
          (each call timed with `perf_counter_ns`).                     Target: ours <= 20 us median.
Sustained the caller logs as fast as it can for `--seconds` (10 keys, step increasing, so no two metrics are equal):
          metrics/s the caller reached, with every metric journaled (the journal's lines are counted).
                                                                        Target: >= 100,000/s.
          Then the drain into the store: metrics/s applied, vs the rate MLflow's own `client.log_batch` reaches with
          1000-metric batches of the same shape on a fresh store.      Target: >= 90% of MLflow's.
          Finally the store's metric rows (read with sqlite3) must be exactly the metrics logged.
Figures are medians (the machines here are noisy); the first store-template build is done up front and not timed.
"""
import argparse, gc, logging, os, sqlite3, statistics, sys, tempfile, time, warnings
from pathlib import Path

KEYS = [f"bench/key_{i}" for i in range(10)]


def quiet():
    for name in ('mlflow', 'alembic'): logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings('ignore', category=DeprecationWarning)  # MLflow's models on SQLAlchemy 2.1
    os.environ.setdefault('MLFLOW_ENABLE_ASYNC_LOGGING', 'false')


def note(msg): print(f"  .. {msg}", file=sys.stderr, flush=True)


def rss_mb():
    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def pct(xs, q):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(len(xs) * q))]


class Bench:
    def __init__(self, root):
        from mlops_nb.config import resolve_settings
        from mlops_nb.store import build_template, template_path
        self.root, self.cache, self.n = Path(root), Path(root)/'cache', 0
        t = time.perf_counter(); build_template(template_path(self.cache))
        self.template_s = time.perf_counter() - t
        self.resolve = resolve_settings

    def project(self):
        "Settings for a new project with its own (template-copied) store."
        from mlops_nb.store import ensure_store
        self.n += 1
        d = self.root/f'project{self.n}'; d.mkdir()
        s = self.resolve(project_dir=d, env={}, cache_dir=str(self.cache))
        ensure_store(s)
        return s


def db_path(s): return s.tracking_uri[len('sqlite:///'):]


def store_rows(s, run_id):
    "(rows, distinct steps, min step, max step) of the run's metrics, read from the SQLite file itself."
    with sqlite3.connect(db_path(s)) as db:
        return db.execute("select count(*), count(distinct step), min(step), max(step) from metrics where run_uuid=?",
                          (run_id,)).fetchone()


def started_tracker(b):
    from mlops_nb.tracker import Tracker
    s = b.project(); t = Tracker(s); rid = t.new_run_id()
    t.record('start', run=rid, experiment='bench', name='bench', tags={}, t=time.time())
    run_id = t.store_run_id(rid, 60)
    assert run_id, f"run not created: {t.last_error}"
    return s, t, rid, run_id


def timed_calls(fn, n, first_step=0):
    "Per-call ns of `fn(key, value, step)` over n calls."
    pc, out = time.perf_counter_ns, []
    for i in range(first_step, first_step + n):
        k, v = KEYS[i % 10], i * 0.001
        a = pc(); fn(k, v, i); out.append(pc() - a)
    return out


# -- per call -------------------------------------------------------------------------------------------------------
def per_call(b, calls, mlflow_calls):
    res = {}
    s, t, rid, run_id = started_tracker(b)
    lm = t.log_metric
    timed_calls(lambda k, v, i: lm(rid, k, v, i), 1000, 0); t.flush(60)  # warm up (key checks, first journal pages)
    res['Tracker.log_metric'] = timed_calls(lambda k, v, i: lm(rid, k, v, i), calls, 1000)
    assert t.flush(600), t.last_error
    assert store_rows(s, run_id)[0] == calls + 1000
    t.close()

    import mlops_nb as mn
    s = b.project()
    run = mn.track('bench', name='bench-mn', settings=s, system_metrics=None)
    assert run.wait_for_id(60)
    timed_calls(mn.log_metric, 1000, 0); mn.sync(60)
    res['mn.log_metric'] = timed_calls(mn.log_metric, calls, 1000)
    mn.stop(); assert mn.sync(600)
    assert store_rows(s, run.run_id)[0] == calls + 1000

    from mlops_nb.store import open_client, experiment_id
    s = b.project(); c = open_client(s)
    mrun = c.create_run(experiment_id(c, s, 'bench')).info.run_id
    timed_calls(lambda k, v, i: c.log_metric(mrun, k, v, step=i), 10, 0)
    res['MlflowClient.log_metric'] = timed_calls(lambda k, v, i: c.log_metric(mrun, k, v, step=i), mlflow_calls, 10)
    assert store_rows(s, mrun)[0] == mlflow_calls + 10
    return res


# -- sustained ------------------------------------------------------------------------------------------------------
def sustained(b, seconds, drain_timeout):
    s, t, rid, run_id = started_tracker(b)
    lm, pc, keys = t.log_metric, time.perf_counter_ns, KEYS
    rss0, samples, n = rss_mb(), [], 0
    note(f"logging for {seconds:g} s")
    t0 = time.perf_counter(); end = t0 + seconds
    while time.perf_counter() < end:  # blocks of 1000 calls; one call in 100 timed, under load
        for _ in range(10):
            for i in range(n, n + 99): lm(rid, keys[i % 10], i * 0.001, i)
            i = n + 99; a = pc(); lm(rid, keys[i % 10], i * 0.001, i); samples.append(pc() - a)
            n += 100
    t1 = time.perf_counter()
    applied1, backlog1, rss1 = t.applied, t.backlog, rss_mb()
    note(f"logged {n:,}; {backlog1:,} queued; draining")
    drained = t.flush(drain_timeout)
    t2 = time.perf_counter()
    assert drained, f"not drained after {drain_timeout}s: backlog {t.backlog}, last error {t.last_error}"
    prefix = f"M\t{rid}\t".encode()
    with open(t.journal.path, 'rb') as f: journaled = sum(1 for line in f if line.startswith(prefix))
    rows = store_rows(s, run_id)
    t.close()
    applied1 -= 1  # the start record
    return dict(n=n, log_s=t1 - t0, drain_s=t2 - t1, total_s=t2 - t0, applied_while_logging=applied1,
                backlog=backlog1, rss_growth_mb=rss1 - rss0, samples=samples, journaled=journaled, rows=rows)


def caller_store_down(b, seconds):
    """The caller's rate with the store unreachable and the flusher left idle (a batch size above the backlog, so the
    caller never wakes it): the journal + queue cost alone, without the background thread competing for the GIL."""
    from mlops_nb.tracker import Tracker
    b.n += 1; d = b.root/f'project{b.n}'; d.mkdir()
    s = b.resolve(project_dir=d, env={}, cache_dir=str(b.cache), tracking_uri='http://127.0.0.1:9')  # discard port
    t = Tracker(s, batch_size=10**9); rid = t.new_run_id()
    t.record('start', run=rid, experiment='bench', name='bench', tags={}, t=time.time())
    lm, keys, n = t.log_metric, KEYS, 0
    t0 = time.perf_counter(); end = t0 + seconds
    while time.perf_counter() < end:
        for i in range(n, n + 1000): lm(rid, keys[i % 10], i * 0.001, i)
        n += 1000
    rate = n / (time.perf_counter() - t0)
    assert t.applied == 0 and t.store_ok is False, (t.applied, t.store_ok)
    t.close(timeout=0)  # the journal stays for replay, in the temp folder
    return rate


def mlflow_peer(b, count):
    "MLflow's own client.log_batch, 1000 metrics a batch, same keys/values/steps; metrics/s including building them."
    from mlflow.entities import Metric
    from mlops_nb.store import open_client, experiment_id
    s = b.project(); c = open_client(s)
    run_id = c.create_run(experiment_id(c, s, 'bench')).info.run_id
    note(f"MLflow peer: log_batch of {count:,} metrics")
    keys, now = KEYS, time.time_ns
    t0 = time.perf_counter()
    for lo in range(0, count, 1000):
        c.log_batch(run_id, metrics=[Metric(keys[i % 10], i * 0.001, now() // 1_000_000, i)
                                     for i in range(lo, min(count, lo + 1000))])
    dt = time.perf_counter() - t0
    rows = store_rows(s, run_id)
    assert rows[0] == count, rows
    return count / dt, dt


# -- report ---------------------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--calls', type=int, default=20_000, help="timed calls of ours (per API)")
    ap.add_argument('--mlflow-calls', type=int, default=200, help="timed calls of MlflowClient.log_metric")
    ap.add_argument('--seconds', type=float, default=10, help="sustained logging time (the issue's figure: 60)")
    ap.add_argument('--peer-metrics', type=int, default=0, help="metrics MLflow's log_batch peer logs (0: as many as ours)")
    ap.add_argument('--drain-timeout', type=float, default=3600)
    a = ap.parse_args()
    quiet()
    with tempfile.TemporaryDirectory(prefix='bench-tracking-') as root:
        note("building the store template (not timed)")
        b = Bench(root)
        note("per-call timings"); pc = per_call(b, a.calls, a.mlflow_calls)
        gc.collect()
        su = sustained(b, a.seconds, a.drain_timeout)
        gc.collect()
        down_s = min(a.seconds, 3); down = caller_store_down(b, down_s)
        gc.collect()
        peer_rate, peer_s = mlflow_peer(b, a.peer_metrics or su['n'])

    us = lambda xs: statistics.median(xs) / 1000
    theirs = us(pc['MlflowClient.log_metric'])
    print(f"store template build (once per MLflow version, not timed below): {b.template_s:.1f} s")
    print(f"\nper call: one logged metric, caller side  (target: ours <= 20 us median)")
    print(f"{'':<26}{'calls':>8}{'median':>12}{'p99':>12}{'MLflow/this':>13}")
    for name, xs in pc.items():
        print(f"{name:<26}{len(xs):>8}{us(xs):>10.1f}us{pct(xs, .99)/1000:>10.1f}us{theirs/us(xs):>12.0f}x")

    n, ls = su['n'], su['log_s']
    caller = n / ls
    drain = (n - su['applied_while_logging']) / su['drain_s']
    overall = n / su['total_s']
    ok = su['journaled'] == n and su['rows'] == (n, n, 0, n - 1)
    print(f"\nsustained: the caller logs as fast as it can for {ls:.1f} s  (targets: caller >= 100,000/s; drain >= 90% of MLflow's log_batch)")
    print(f"caller                 {caller:>12,.0f} metrics/s   ({n:,} metrics; journal holds {su['journaled']:,} lines)")
    print(f"  per call under load  median {us(su['samples']):.1f} us, p99 {pct(su['samples'], .99)/1000:.1f} us, "
          f"max {max(su['samples'])/1e6:.1f} ms  ({len(su['samples']):,} calls sampled)")
    print(f"  same loop, store unreachable and flusher idle (no GIL contention) {down:,.0f} metrics/s over {down_s:g} s")
    print(f"  backlog when it stopped (at most 250,000 held in memory, the rest read back from the journal) {su['backlog']:,} metrics, process memory +{su['rss_growth_mb']:.0f} MB")
    print(f"store, while logging   {su['applied_while_logging']/ls:>12,.0f} metrics/s   ({su['applied_while_logging']:,} applied)")
    print(f"store, drain after     {drain:>12,.0f} metrics/s   ({n - su['applied_while_logging']:,} in {su['drain_s']:.1f} s)"
          f"   {drain/peer_rate:6.0%} of MLflow's")
    print(f"store, first log->flush{overall:>12,.0f} metrics/s   ({su['total_s']:.1f} s)"
          f"   {overall/peer_rate:6.0%} of MLflow's")
    print(f"MLflow client.log_batch{peer_rate:>12,.0f} metrics/s   ({a.peer_metrics or n:,} in 1000-metric batches, {peer_s:.1f} s)")
    print(f"none lost: {'yes' if ok else 'NO'}  (logged {n:,}; journal {su['journaled']:,}; store rows, distinct steps, "
          f"min, max step = {su['rows']})")
    print(f"\nmedians over {a.calls:,} calls (ours) and {a.mlflow_calls} (MLflow); p99 = 99th percentile; "
          f"ratio = MLflow / mlops_nb for per-call time, mlops_nb / MLflow for rates")
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
