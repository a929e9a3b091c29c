"""Quota accounting cost and estimate accuracy, measured in one run.

    python benchmarks/bench_quota.py [--seconds 10] [--repeat 3]
    python benchmarks/bench_quota.py --quick        # 4 s of work, 2 repeats
    python benchmarks/bench_quota.py --smoke        # 0.5 s of work, 1 repeat, 10 draws: CI runs this so it cannot rot

Overhead   the same CPU-bound work (a pure-Python loop of a fixed number of iterations, about `--seconds` of CPU),
           each variant in a new Python process, `--repeat` times:
             untracked            no run at all (the peer);
             tracked, accounting  `mn.track()` with its usage meter (samples memory twice a second, children every 5 s);
             tracked, no meter    the same run with accounting off (`_account=False`), to separate the meter from
                                  the rest of tracking (journal, MLflow warm-up in the background).
           The work starts once tracking's start-up (the store opened, MLflow imported in the background) is over.
           Figures: the process's CPU time, the work thread's, the wall time, and the meter thread's own CPU time
           (from /proc/self/task/<tid>/schedstat, in ns), as a share of the work's CPU time.
           Target: accounting <= 1 % of the run's CPU.
Estimates  a synthetic history of a pipeline (usage linear in rows and n_trials, 4 % noise), `--history` runs; the
           next run drawn from the same law; `estimate()` error on CPU time, wall time and peak memory, median over
           200 draws of history and next run. Target: within 15 %.
Figures are medians (the machines here are noisy).
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, textwrap, time
from pathlib import Path

WORK = """
import time, os, threading, json, sys
def work(n):
    x = 0
    for i in range(n): x += i * i % 7
    return x
N = int(sys.argv[2])
mode = sys.argv[1]
run = None
if mode != 'untracked':
    import mlops_nb as mn
    run = mn.track(name='bench', system_metrics=None, _account=(mode == 'accounting'))
    run.wait_for_id(120); time.sleep(1)  # the store is open and MLflow imported: tracking's start-up is over
def thread_ns(tid): return int(open(f'/proc/self/task/{tid}/schedstat').read().split()[0])  # ns on a CPU
meter = getattr(run, 'meter', None)
m0 = thread_ns(meter._thread.native_id) if meter else 0
t0, w0, c0 = time.process_time(), time.perf_counter(), time.thread_time()
work(N)
cpu, wall, main = time.process_time() - t0, time.perf_counter() - w0, time.thread_time() - c0
meter_cpu = (thread_ns(meter._thread.native_id) - m0)/1e9 if meter else 0.0
if run is not None: mn.stop()
print(json.dumps(dict(cpu=cpu, wall=wall, main=main, meter_cpu=meter_cpu)))
"""


def calibrate(seconds):
    "Loop iterations that take about `seconds` of CPU here."
    code = "import time\nt=time.process_time()\nx=0\nfor i in range(5_000_000): x += i*i%7\nprint(time.process_time()-t)"
    per = float(subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout) / 5_000_000
    return int(seconds / per)


def overhead(seconds, repeat):
    n = calibrate(seconds)
    out = {}
    with tempfile.TemporaryDirectory() as d:
        Path(d, 'pyproject.toml').write_text('[project]\nname = "bench-quota"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith(('MLOPS_NB_', 'MLFLOW_'))}
        for i in range(repeat):
            for mode in ('untracked', 'accounting', 'no-meter'):
                print(f"  .. repeat {i + 1}: {mode}", file=sys.stderr, flush=True)
                r = subprocess.run([sys.executable, '-c', WORK, mode, str(n)], cwd=d, env=env, capture_output=True, text=True, timeout=600)
                if r.returncode: sys.exit(f"{mode} failed:\n{r.stderr[-2000:]}")
                out.setdefault(mode, []).append(json.loads(r.stdout.strip().splitlines()[-1]))
    return out


def estimates(history, draws):
    import numpy as np
    from mlops_nb.resources.quota import estimate
    truth = lambda rows, t: dict(cpu_s=5 + 2e-4*rows + 1.5*t, wall_s=8 + 1e-4*rows + 1.0*t, peak_rss_mb=300 + 4e-3*rows)
    errs = {k: [] for k in ('cpu_s', 'wall_s', 'peak_rss_mb')}; inside = {k: 0 for k in errs}
    rng = np.random.default_rng(0)
    for d in range(draws):
        hist = []
        for i in range(history):
            rows, t = int(rng.integers(10_000, 200_000)), int(rng.integers(5, 40))
            hist.append(dict(run_id=str(i), status='FINISHED', params={'n_trials': str(t)},
                             usage={k: v*(1 + rng.normal(0, 0.04)) for k, v in truth(rows, t).items()} | {'data_rows': rows}))
        rows, t = int(rng.integers(10_000, 200_000)), int(rng.integers(5, 40))
        nxt = {k: v*(1 + rng.normal(0, 0.04)) for k, v in truth(rows, t).items()}
        e = estimate(hist, {'n_trials': t}, rows)
        for k in errs:
            pred, lo, hi = e.values[k]
            errs[k].append(abs(pred - nxt[k])/nxt[k]); inside[k] += lo <= nxt[k] <= hi
    return errs, inside


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seconds', type=float, default=10.0); ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--history', type=int, default=12); ap.add_argument('--draws', type=int, default=200)
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--smoke', action='store_true', help="the smallest run that takes every path once (seconds, not minutes); CI runs it so the script cannot rot")
    a = ap.parse_args()
    if a.quick: a.seconds, a.repeat, a.draws = 4.0, 2, 50
    if a.smoke: a.seconds, a.repeat, a.draws = 0.5, 1, 10
    t_all = time.perf_counter()
    res = overhead(a.seconds, a.repeat)
    med = lambda xs: statistics.median(xs)
    base = med([r['cpu'] for r in res['untracked']])
    print(f"\naccounting overhead: {a.seconds:g} s of CPU-bound work, {a.repeat} repeats, each in a new process; medians")
    print(f"{'variant':<22}{'process CPU s':>14}{'work thread s':>14}{'wall s':>8}{'meter CPU ms':>14}{'wall vs untracked':>19}")
    wbase = med([r['wall'] for r in res['untracked']])
    for mode in ('untracked', 'accounting', 'no-meter'):
        rs = res[mode]; w = med([r['wall'] for r in rs])
        print(f"{mode:<22}{med([r['cpu'] for r in rs]):>14.3f}{med([r['main'] for r in rs]):>14.3f}{w:>8.3f}{1000*med([r['meter_cpu'] for r in rs]):>14.2f}{w/wbase:>18.3f}x")
    meter_share = med([r['meter_cpu']/r['main'] for r in res['accounting']])
    print(f"\nthe meter thread's own CPU: {meter_share:.3%} of the run's CPU time (target <= 1 %)")
    errs, inside = estimates(a.history, a.draws)
    print(f"\nestimates: {a.history} past runs (usage linear in rows and n_trials, 4 % noise), next run drawn from the same law, {a.draws} draws")
    for k in errs:
        e = sorted(errs[k])
        print(f"  {k:<12} median error {statistics.median(e):6.1%}   90th percentile {e[int(0.9*len(e))]:6.1%}   next run inside the 90 % interval {inside[k]/len(e):.0%}")
    ok = meter_share <= 0.01 and all(statistics.median(v) <= 0.15 for v in errs.values())
    print(f"\nsummary: accounting {meter_share:.3%} of CPU ({'met' if meter_share <= 0.01 else 'MISSED'}, <= 1 %); estimate median errors "
          + ', '.join(f"{k} {statistics.median(v):.1%}" for k, v in errs.items()) + f" ({'met' if ok else 'check'}, <= 15 %); whole run {time.perf_counter() - t_all:.0f} s")


if __name__ == '__main__':
    main()
