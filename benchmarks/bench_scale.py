"""Beyond one machine: sweeps on a Dask cluster vs the local executor, the Dask executor's cost per task, and profiling a
Parquet folder on 2 workers vs one process.

    python benchmarks/bench_scale.py --quick                 # smoke: 4 notebooks, 2 overhead rounds, 0.05 GB: ~3 minutes
    python benchmarks/bench_scale.py [--size-gb 1] [--work 4] [--repeat 3]
    python benchmarks/bench_scale.py --skip-sweep            # (or --skip-profile) one part only
    python benchmarks/bench_scale.py --smoke                 # 2 notebooks of 0.2 s, 1 overhead round, 5 MB: CI runs this so it cannot rot

The cluster is `DaskCluster` (what `mlops-nb cluster` starts): a `dask scheduler` and 2 `dask worker` processes with
1 thread each, on this machine.
Overhead (first, after one untimed warm-up run on each executor: the store template, the workers' imports)
Sweep    8 CPU-bound notebooks (a parameter `i`; one cell spins pure Python for `--work` s of CPU) with `sweep()`:
         on the cluster (`executor=dask://...`), and with the local executor at `workers=1` and `workers=2`.
         Wall time each, and the ratios. Every sweep must have 8 FINISHED runs in the store with metric m = i.
Overhead A trivial notebook (`y = x + 1`), `--repeat` rounds alternating: `run_on(dask://...)` and `run_on('local')`
         (the same `run_notebook` underneath); the difference of the medians is what the Dask executor adds per task
         (shipping the project, the task round trip, writing and replaying the journal here).
Profile  A Parquet folder of `--size-gb` (in-memory size of the frames written; 4 numeric + 2 categorical columns,
         32 files): `profile(folder)` in a new process vs `profile_on(folder, dask://...)` (files on the 2 workers,
         merged in the calling process). Time, and the peak RSS of each process: the single process; each worker
         (sampled every 0.1 s while it profiles) and the caller. The two profiles must agree (rows, counts, means).
Figures are medians where there are rounds; the machines here are shared, so read the ratios, not the seconds.
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, threading, time
from pathlib import Path

KERNELSPEC = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}, "language_info": {"name": "python"}}


def note(msg): print(f"  .. {msg}", file=sys.stderr, flush=True)


def notebook(path, params_src, body_src):
    cell = lambda i, src, tags: {"cell_type": "code", "execution_count": None, "id": f"cell{i}",
                                 "metadata": {"tags": tags} if tags else {}, "outputs": [], "source": src}
    nb = {"cells": [cell(0, params_src, ['parameters']), cell(1, body_src, None)], "metadata": KERNELSPEC, "nbformat": 4, "nbformat_minor": 5}
    Path(path).write_text(json.dumps(nb, indent=1)); return Path(path)


def project(root, name):
    d = Path(root)/name; d.mkdir()
    (d/'pyproject.toml').write_text('[project]\nname = "bench"\n')
    return d


CPU = """import time, mlops_nb as mn
t0 = time.process_time(); n = 0
while time.process_time() - t0 < work: n += sum(range(1000))
mn.log_metric('m', float(i))"""


def bench_sweep(root, address, n, work):
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.pipelines.sweeps import sweep
    from mlops_nb.store.client import open_client
    out = {}
    for label, ex, workers in [('dask 2 workers', address, 2), ('local --workers 1', 'local', 1), ('local --workers 2', 'local', 2)]:
        p = project(root, label.replace(' ', '-'))
        nb = notebook(p/'cpu.ipynb', f"i = 0\nwork = {work}", CPU)
        s = resolve_settings(project_dir=p)
        t0 = time.perf_counter()
        r = sweep(nb, [('i', ','.join(map(str, range(n))))], workers, settings=s, executor=ex)
        wall = time.perf_counter() - t0
        assert r.ok and sorted(x.metrics['m'] for x in r.results) == [float(i) for i in range(n)], str(r)
        c = open_client(s)
        kids = c.search_runs([e.experiment_id for e in c.search_experiments()], filter_string=f"tags.`mlflow.parentRunId` = '{r.parent_run_id}'")
        assert len(kids) == n and all(k.info.status == 'FINISHED' for k in kids)
        out[label] = wall; note(f"sweep {label}: {wall:.1f} s")
    return out


def bench_overhead(root, address, repeat):
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.pipelines.sweeps import run_on
    p = project(root, 'overhead')
    nb = notebook(p/'tiny.ipynb', "x = 1", "y = x + 1")
    s = resolve_settings(project_dir=p)
    run_on(address, nb, settings=s, html=False); run_on('local', nb, settings=s, html=False)  # warm-up: store, worker imports
    times = {'dask': [], 'local': []}
    for k in range(repeat):
        for label, ex in ([('dask', address), ('local', 'local')] if k % 2 == 0 else [('local', 'local'), ('dask', address)]):
            t0 = time.perf_counter(); r = run_on(ex, nb, settings=s, html=False); times[label].append(time.perf_counter() - t0)
            assert r.ok, str(r)
    med = {k: statistics.median(v) for k, v in times.items()}
    note(f"overhead: dask {med['dask']:.2f} s, local {med['local']:.2f} s")
    return med


def make_parquet(folder, size_gb, files=32):
    import numpy as np, pandas as pd
    folder.mkdir(parents=True, exist_ok=True)
    rows_per_file = max(1000, int(size_gb * 2**30 / files / 64))  # ~64 bytes a row in memory (4 float64 + 2 short strings)
    rng = np.random.default_rng(0)
    cats = np.array([f"c{i}" for i in range(200)])
    for f in range(files):
        df = pd.DataFrame({f"x{j}": rng.normal(j, 1 + j, rows_per_file) for j in range(4)}
                          | {'k': cats[rng.integers(0, 200, rows_per_file)], 'b': rng.integers(0, 2, rows_per_file).astype(bool).astype(str)})
        df.to_parquet(folder/f"part-{f:03d}.parquet", row_group_size=1 << 17)
    return rows_per_file * files


SINGLE = """import json, resource, sys, time
from mlops_nb.monitoring.profiles import profile
t0 = time.perf_counter(); p = profile(sys.argv[1]); dt = time.perf_counter() - t0
print(json.dumps(dict(seconds=dt, rows=p.rows, peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      means={c.name: c.moments.mean for c in p if c.moments})))"""


def bench_profile(root, cluster, size_gb):
    import psutil
    from mlops_nb.pipelines.workers import profile_on
    folder = Path(root)/'parquet'
    t0 = time.perf_counter(); rows = make_parquet(folder, size_gb)
    disk = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    note(f"parquet: {rows:,} rows, {disk:.0f} MB on disk, written in {time.perf_counter() - t0:.0f} s")
    r = subprocess.run([sys.executable, '-c', SINGLE, str(folder)], capture_output=True, text=True, check=True)
    single = json.loads(r.stdout.strip().splitlines()[-1])
    note(f"profile, one process: {single['seconds']:.1f} s, peak {single['peak_mb']:.0f} MB")
    workers = list(cluster.worker_processes().values())
    peaks, stop = {w.pid: 0 for w in workers}, threading.Event()
    def sample():
        while not stop.wait(0.1):
            for w in workers:
                try: peaks[w.pid] = max(peaks[w.pid], w.memory_info().rss)
                except psutil.NoSuchProcess: pass
    t = threading.Thread(target=sample, daemon=True); t.start()
    base = {w.pid: w.memory_info().rss / 2**20 for w in workers}
    import resource
    t0 = time.perf_counter(); p = profile_on(folder, cluster.address); dt = time.perf_counter() - t0
    stop.set(); t.join()
    caller = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert p.rows == single['rows'] == rows
    for name, m in single['means'].items(): assert abs(p[name].moments.mean - m) <= 1e-9 * max(1, abs(m)), name
    note(f"profile, 2 workers: {dt:.1f} s, worker peaks {[round(v / 2**20) for v in peaks.values()]} MB")
    return dict(rows=rows, disk_mb=disk, single=single, dask_seconds=dt, worker_peak_mb=[v / 2**20 for v in peaks.values()],
                worker_base_mb=list(base.values()), caller_peak_mb=caller)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help="4 notebooks of 1 s, 2 overhead rounds, 0.05 GB")
    ap.add_argument('--notebooks', type=int, default=8)
    ap.add_argument('--work', type=float, default=4.0, help="CPU seconds each sweep notebook spins")
    ap.add_argument('--repeat', type=int, default=5, help="overhead rounds")
    ap.add_argument('--size-gb', type=float, default=None, help="size of the Parquet folder [default 1; --quick 0.05]")
    ap.add_argument('--skip-sweep', action='store_true'); ap.add_argument('--skip-profile', action='store_true')
    ap.add_argument('--smoke', action='store_true', help="the smallest run that takes every path once (seconds, not minutes); CI runs it so the script cannot rot")
    a = ap.parse_args()
    if a.quick: a.notebooks, a.work, a.repeat = 4, 1.0, 2
    if a.smoke: a.notebooks, a.work, a.repeat = 2, 0.2, 1
    size = a.size_gb if a.size_gb is not None else (0.005 if a.smoke else 0.05 if a.quick else 1.0)
    from mlops_nb.pipelines.cluster import DaskCluster
    with tempfile.TemporaryDirectory(prefix='bench-scale-') as root:
        os.environ['MLOPS_NB_CACHE_DIR'] = str(Path(root)/'cache')
        for k in [k for k in os.environ if k.startswith(('MLOPS_NB_', 'MLFLOW_')) and k != 'MLOPS_NB_CACHE_DIR']: del os.environ[k]
        t0 = time.perf_counter()
        with DaskCluster(workers=2, threads=1, folder=Path(root)/'cluster') as cluster:
            note(f"cluster {cluster.address} up in {time.perf_counter() - t0:.1f} s")
            res = dict(notebooks=a.notebooks, work=a.work, size_gb=size)
            if not a.skip_sweep:
                res['overhead'] = o = bench_overhead(root, cluster.address, a.repeat)  # first: its warm-up builds the store template, loads the workers
                res['sweep'] = s = bench_sweep(root, cluster.address, a.notebooks, a.work)
                print(f"\nSweep of {a.notebooks} CPU-bound notebooks ({a.work:g} s CPU each):")
                for k, v in s.items(): print(f"  {k:<20} {v:7.1f} s")
                print(f"  local 1 worker / dask 2 workers: {s['local --workers 1'] / s['dask 2 workers']:.2f}x;"
                      f"  local 2 workers / dask 2 workers: {s['local --workers 2'] / s['dask 2 workers']:.2f}x")
                print(f"Per-task cost, trivial notebook (median of {a.repeat}): dask {o['dask']:.2f} s, local {o['local']:.2f} s,"
                      f" overhead {o['dask'] - o['local']:+.2f} s")
            if not a.skip_profile:
                res['profile'] = p = bench_profile(root, cluster, size)
                print(f"\nProfile of a Parquet folder: {p['rows']:,} rows, {p['disk_mb']:.0f} MB on disk (~{size:g} GB in memory):")
                print(f"  one process   {p['single']['seconds']:7.1f} s   peak RSS {p['single']['peak_mb']:.0f} MB")
                print(f"  2 workers     {p['dask_seconds']:7.1f} s   peak RSS per worker {', '.join(f'{v:.0f}' for v in p['worker_peak_mb'])} MB"
                      f" (idle {', '.join(f'{v:.0f}' for v in p['worker_base_mb'])} MB); caller {p['caller_peak_mb']:.0f} MB")
                print(f"  speed-up {p['single']['seconds'] / p['dask_seconds']:.2f}x")
            print(json.dumps(res, default=float), file=sys.stderr)


if __name__ == '__main__':
    main()
