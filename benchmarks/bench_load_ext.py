"""`%load_ext mlops_nb` and the first `%mlops track` in a fresh Jupyter kernel, vs `import mlflow` and `mlflow.start_run()`.

    python benchmarks/bench_load_ext.py [--repeat 5] [--wait 3]
    python benchmarks/bench_load_ext.py --smoke       # 1 repeat, 0.5 s wait: CI runs this so the script cannot rot

Each repeat starts real ipykernel kernels (jupyter_client's KernelManager), each in a new project folder whose store is
made by the fast template copy (MLOPS_NB_CACHE_DIR points at a cache built once up front, MLOPS_NB_PROJECT_DIR at the
project). Timings are taken inside the kernel with perf_counter (the cell's round trip as the front end sees it is
shown too).

  ours   `%load_ext mlops_nb` (target <= 150 ms), and which of mlflow, papermill, lightgbm, plotly, pandas the kernel's
         main thread imported during it (target: none; MLflow is imported by the 'mlops-nb-warm-up' thread); then,
         `--wait` seconds later, the first `%mlops track --system-metrics 0` (target <= 0.5 s after a load >= 3 s before).
  MLflow `import mlflow`, then `--wait` seconds later `mlflow.set_experiment(); mlflow.start_run()` on an SQLite store:
         a new file (MLflow creates and migrates it) and a copy of the migrated template (the store ours uses).
Prints medians over the repeats and the ratio MLflow / mlops_nb.
"""
import argparse, json, os, statistics, sys, tempfile, time
from pathlib import Path

WATCH = ('mlflow', 'papermill', 'lightgbm', 'plotly', 'pandas')

SPY = f"""
import json, sys, threading, time
WATCH = {WATCH!r}
class _ImportSpy:
    "First imports of the watched packages, with the thread that made them (a finder that finds nothing)."
    seen = []
    def find_spec(self, name, path=None, target=None):
        if name in WATCH: _ImportSpy.seen.append((threading.get_ident(), threading.current_thread().name, name))
        return None
sys.meta_path.insert(0, _ImportSpy())
_before = [m for m in WATCH if m in sys.modules]
"""

LOAD = """
_me = threading.get_ident(); _t0 = time.perf_counter()
%load_ext mlops_nb
_load_s = time.perf_counter() - _t0
_seen_at_load = list(_ImportSpy.seen)
_loaded_after = [m for m in WATCH if m in sys.modules]
"""

TRACK = """
_warm_alive = any(t.name == 'mlops-nb-warm-up' for t in threading.enumerate())
_mlflow_ready = 'mlflow.tracking' in sys.modules
_seen_at_track = list(_ImportSpy.seen)
_t0 = time.perf_counter()
%mlops track --experiment bench --name first --system-metrics 0
_track_s = time.perf_counter() - _t0
"""

REPORT = """
import mlops_nb as mn
_rid = mn.active_run().wait_for_id(60); _in_store_s = time.perf_counter() - _t0
%mlops stop
_synced = mn.sync(60)
print('@@' + json.dumps(dict(before=_before, load_s=_load_s, main_imports=sorted({n for i, _, n in _seen_at_load if i == _me}),
      load_imports=sorted({f'{n} ({t})' for _, t, n in _seen_at_load}), loaded_after=_loaded_after, warm_alive=_warm_alive,
      mlflow_ready=_mlflow_ready, wait_imports=sorted({f'{n} ({t})' for _, t, n in _seen_at_track[len(_seen_at_load):]}), track_s=_track_s, run_id=_rid, in_store_s=_in_store_s, synced=_synced)))
"""

PEER_IMPORT = """
import json, time
_t0 = time.perf_counter()
import mlflow
_import_s = time.perf_counter() - _t0
"""

PEER_START = """
_t0 = time.perf_counter()
mlflow.set_tracking_uri({uri!r}); mlflow.set_experiment('bench'); _run = mlflow.start_run(run_name='first')
_start_s = time.perf_counter() - _t0
"""

PEER_REPORT = """
mlflow.end_run()
print('@@' + json.dumps(dict(import_s=_import_s, start_s=_start_s, run_id=_run.info.run_id)))
"""


class Kernel:
    "A real ipykernel kernel in `cwd` with `env`; `run(code)` returns (seconds for the round trip, stdout text)."
    def __init__(self, cwd, env, log):
        from jupyter_client.manager import KernelManager
        t = time.perf_counter()
        self.km = KernelManager(kernel_name='python3')
        self.log = open(log, 'ab')
        self.km.start_kernel(cwd=str(cwd), env=env, stdout=self.log, stderr=self.log)
        self.kc = self.km.client(); self.kc.start_channels(); self.kc.wait_for_ready(timeout=120)
        self.ready_s = time.perf_counter() - t

    def run(self, code, timeout=300):
        out, errors = [], []
        def hook(msg):
            c = msg['content']
            if msg['msg_type'] == 'stream': out.append(c['text'])
            elif msg['msg_type'] == 'error': errors.append('\n'.join(c['traceback']))
        t = time.perf_counter()
        reply = self.kc.execute_interactive(code, output_hook=hook, timeout=timeout)
        dt = time.perf_counter() - t
        if reply['content']['status'] != 'ok' or errors:
            raise RuntimeError(f"cell failed:\n{code}\n{''.join(errors) or reply['content']}")
        return dt, ''.join(out)

    def close(self):
        self.kc.stop_channels(); self.km.shutdown_kernel(now=False); self.log.close()

    def __enter__(self): return self
    def __exit__(self, *a): self.close()


def result(text):
    return json.loads(next(l[2:] for l in text.splitlines() if l.startswith('@@')))


def kernel_env(project, cache):
    env = {k: v for k, v in os.environ.items() if not k.startswith(('MLOPS_NB_', 'MLFLOW_', 'JPY_'))}
    return env | dict(MLOPS_NB_PROJECT_DIR=str(project), MLOPS_NB_CACHE_DIR=str(cache), PYTHONUNBUFFERED='1')


def ours(root, cache, i, wait):
    project = root/f'ours{i}'; project.mkdir()
    with Kernel(project, kernel_env(project, cache), root/'kernels.log') as k:
        k.run(SPY)
        load_rt, _ = k.run(LOAD)
        time.sleep(wait)
        track_rt, printed = k.run(TRACK)
        _, text = k.run(REPORT)
        r = result(text) | dict(load_rt=load_rt, track_rt=track_rt, printed=printed.strip(), kernel_s=k.ready_s)
    assert r['run_id'] and r['synced'], r
    return r


def peer(root, cache, i, wait, template):
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.store.client import ensure_store
    project = root/f'mlflow-{"template" if template else "new"}{i}'; project.mkdir()
    s = resolve_settings(project_dir=project, env={}, cache_dir=str(cache))
    if template: ensure_store(s)  # the very store `%mlops track` gets: a copy of the migrated template
    with Kernel(project, kernel_env(project, cache), root/'kernels.log') as k:
        import_rt, _ = k.run(PEER_IMPORT)
        time.sleep(wait)
        start_rt, _ = k.run(PEER_START.format(uri=s.tracking_uri))
        _, text = k.run(PEER_REPORT)
        return result(text) | dict(import_rt=import_rt, start_rt=start_rt)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeat', type=int, default=5)
    ap.add_argument('--wait', type=float, default=3, help="seconds between the load (or import) and the first run")
    ap.add_argument('--smoke', action='store_true', help="the smallest run that takes every path once (seconds, not minutes); CI runs it so the script cannot rot")
    a = ap.parse_args()
    if a.smoke: a.repeat, a.wait = 1, 0.5
    from mlops_nb.store.client import build_template, template_path
    with tempfile.TemporaryDirectory(prefix='bench-load-ext-') as root:
        root = Path(root); cache = root/'cache'
        print("  .. building the shared store template (not timed)", file=sys.stderr, flush=True)
        build_template(template_path(cache))
        rs, new, tpl = [], [], []
        for i in range(a.repeat):
            print(f"  .. repeat {i + 1}/{a.repeat}", file=sys.stderr, flush=True)
            rs.append(ours(root, cache, i, a.wait))
            tpl.append(peer(root, cache, i, a.wait, template=True))
            new.append(peer(root, cache, i, a.wait, template=False))

    med = lambda xs, k: statistics.median(x[k] for x in xs) * 1000
    print(f"fresh ipykernel kernels (ready in {med(rs, 'kernel_s'):.0f} ms median); {a.repeat} repeats; "
          f"{a.wait:g} s between load/import and the first run")
    print(f"\n{'':<52}{'in kernel':>11}{'round trip':>12}{'MLflow/this':>13}")
    load, imp = med(rs, 'load_s'), med(tpl + new, 'import_s')
    print(f"{'%load_ext mlops_nb            (target <= 150 ms)':<52}{load:>9.1f}ms{med(rs, 'load_rt'):>10.1f}ms{imp/load:>12.1f}x")
    print(f"{'import mlflow':<52}{imp:>9.1f}ms{med(tpl + new, 'import_rt'):>10.1f}ms")
    track = med(rs, 'track_s')
    print(f"{'first %mlops track            (target <= 500 ms)':<52}{track:>9.1f}ms{med(rs, 'track_rt'):>10.1f}ms")
    print(f"{'  ...until the run is in the store':<52}{med(rs, 'in_store_s'):>9.1f}ms")
    for name, xs in (('migrated store (template copy)', tpl), ('new store file (MLflow migrates)', new)):
        st = med(xs, 'start_s')
        print(f"{'mlflow.start_run(), ' + name:<52}{st:>9.1f}ms{med(xs, 'start_rt'):>10.1f}ms{st/track:>12.1f}x (vs track)")
    both = statistics.median(x['load_s'] + x['track_s'] for x in rs) * 1000
    both_mlflow = statistics.median(x['import_s'] + x['start_s'] for x in tpl) * 1000
    print(f"{'load + track  vs  import + start_run (migrated store)':<52}{both:>9.1f}ms{'':>12}{both_mlflow/both:>12.1f}x"
          f"   (MLflow {both_mlflow:.0f} ms)")

    print(f"\nimports during %load_ext, per repeat (target: none by the main thread)")
    for i, r in enumerate(rs):
        print(f"  {i + 1}: main thread: {', '.join(r['main_imports']) or 'none'}; all threads: {', '.join(r['load_imports']) or 'none'}; "
              f"loaded when it returned: {', '.join(r['loaded_after']) or 'none'}"
              + (f"; already loaded before: {', '.join(r['before'])}" if r['before'] else '')
              + f"; then, before the track: {', '.join(r['wait_imports']) or 'none'}")
    warm = sum(not r['warm_alive'] and r['mlflow_ready'] for r in rs)
    known = sum('Tracking run ' in r['printed'] and 'queued' not in r['printed'] for r in rs)
    print(f"MLflow warm-up finished before the track: {warm}/{len(rs)}; run id known when track returned: {known}/{len(rs)}")
    print(f"e.g. {rs[-1]['printed']!r}")
    print(f"\nmedians of {a.repeat} repeats; 'in kernel' = perf_counter around the magic inside the kernel; "
          f"'round trip' = execute request to reply at the client")


if __name__ == '__main__':
    main()
