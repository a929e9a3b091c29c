"""New-store time: mlops_nb's template copy vs MLflow's own SQLite store creation, measured in one run.

    python benchmarks/bench_store_create.py [--repeat 7]
    python benchmarks/bench_store_create.py --smoke     # one of each: CI runs this so the script cannot rot

Prints medians (machines here are noisy) and the ratio MLflow / mlops_nb for:
  in-process  the store call alone, MLflow already imported for MLflow's side;
  cold        a new Python process from start to a ready store, as a user's first `%mlops track` or CLI call sees it.
"""
import argparse, statistics, subprocess, sys, tempfile, time
from pathlib import Path


def median_ms(xs): return statistics.median(xs) * 1000


def in_process(repeat, cache):
    import logging
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.store.client import ensure_store, template_path, build_template
    t = time.perf_counter(); build_template(template_path(cache)); first = time.perf_counter() - t
    ours, theirs = [], []
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    logging.getLogger('mlflow.store.db.utils').setLevel(logging.WARNING)  # one INFO line per migration step
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as d:
            s = resolve_settings(project_dir=d, env={}, cache_dir=cache)
            t = time.perf_counter(); info = ensure_store(s); ours.append(time.perf_counter() - t)
            assert info.created
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter(); SqlAlchemyStore(f"sqlite:///{d}/mlflow.db", f"{d}/artifacts").engine.dispose()
            theirs.append(time.perf_counter() - t)
    return median_ms(ours), median_ms(theirs), first * 1000


COLD_OURS = "from mlops_nb.store.client import ensure_store; from mlops_nb.core.config import resolve_settings; ensure_store(resolve_settings(project_dir={d!r}, env={{}}, cache_dir={c!r}))"
COLD_THEIRS = "import logging; logging.disable(logging.INFO); from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore; SqlAlchemyStore('sqlite:///{d}/mlflow.db', '{d}/artifacts').engine.dispose()"


def cold(repeat, cache):
    ours, theirs = [], []
    for _ in range(repeat):
        for code, out in ((COLD_OURS, ours), (COLD_THEIRS, theirs)):
            with tempfile.TemporaryDirectory() as d:
                t = time.perf_counter()
                subprocess.run([sys.executable, '-c', code.format(d=d, c=cache)], check=True, capture_output=True)
                out.append(time.perf_counter() - t)
    return median_ms(ours), median_ms(theirs)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeat', type=int, default=7)
    ap.add_argument('--smoke', action='store_true', help="the smallest run that takes every path once (seconds, not minutes); CI runs it so the script cannot rot")
    a = ap.parse_args()
    if a.smoke: a.repeat = 1
    with tempfile.TemporaryDirectory() as cache:
        ours, theirs, first = in_process(a.repeat, cache)
        cold_ours, cold_theirs = cold(1 if a.smoke else max(3, a.repeat // 2), cache)
    print(f"one-time template build per MLflow version (includes importing MLflow): {first:.0f} ms")
    print(f"{'new store':<12}{'mlops_nb':>12}{'MLflow':>12}{'ratio':>9}")
    print(f"{'in-process':<12}{ours:>10.1f}ms{theirs:>10.1f}ms{theirs/ours:>8.1f}x")
    print(f"{'cold':<12}{cold_ours:>10.1f}ms{cold_theirs:>10.1f}ms{cold_theirs/cold_ours:>8.1f}x")
    print(f"medians of {a.repeat} (in-process) and {1 if a.smoke else max(3, a.repeat // 2)} (cold) runs; ratio = MLflow / mlops_nb")
