"""What the live run view costs the caller: logging N metrics with the view open vs without it, in alternating pairs.

    python benchmarks/bench_live.py                  # 100k metrics a run, 15 pairs: ~1-2 minutes
    python benchmarks/bench_live.py --smoke          # 10k metrics, 2 pairs: a few seconds (CI: it runs and reports)
    python benchmarks/bench_live.py --million        # also one run of 1M metrics with the view: what reaches the browser

Each measurement is a new tracked run in one temporary project (`mn.track(system_metrics=None)`, the run's context
capture finished before the clock starts) logging N metrics (`loss` and `acc` alternately, steps 0..N/2-1) with
`mn.log_metric`, timed with perf_counter around the loop alone. With the view, a `LiveView(run).widget` is made first:
the real anywidget model in this process (ipywidgets' in-process comm, so each update is serialised as it would be for
a front end, then dropped) and its reader thread, at the pace it keeps while a cell runs. Without it, nothing else
changes. The pairs alternate which goes first. No sync process runs (MLOPS_NB_SYNC_DELAY is set, as under `mlops-nb
run`): applying the journal to the store is the same work in both arms and only adds noise on 2 cores.

Reports the median time of each arm, their ratio (target <= 1.10), the median of the pairwise ratios, and what the
view sent: updates, curve points in all and in the largest update (bounded: at most 500 per drawn curve, whatever N),
and how long it took, once the loop was done (as after a cell), to read the rest of the journal.
"""
import argparse, json, os, statistics, sys, tempfile, time
from pathlib import Path

os.environ['MLOPS_NB_SYNC_DELAY'] = '1'  # no sync process (see above)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _thread_cpu(thread):
    "Seconds the thread was on a CPU (Linux `/proc/self/task/<tid>/schedstat`), or `None`."
    try: return int(Path(f'/proc/self/task/{thread.native_id}/schedstat').read_text().split()[0])/1e9
    except (OSError, ValueError, AttributeError): return None


def _run(settings, n, with_view, name):
    import mlops_nb as mn
    from mlops_nb.tracking.live import LiveView
    run = mn.track(name=name, settings=settings, system_metrics=None)
    run.capture._thread.join(60)  # the context capture of a new run: not part of either arm
    view = None
    if with_view:
        view = LiveView(run, settle=0)
        view.widget  # the model, its first update, the thread
    log = mn.log_metric
    cpu0 = _thread_cpu(view._thread) if view else 0
    t = time.perf_counter()
    for i in range(n // 2):
        log('loss', 1/(i + 1), step=i); log('acc', 1 - 1/(i + 2), step=i)
    dt = time.perf_counter() - t
    cpu = (_thread_cpu(view._thread) - cpu0) if view else 0
    mn.stop()
    out = dict(seconds=dt)
    if view is not None:
        out['thread_cpu_share'] = cpu/dt if cpu is not None else None
        t = time.perf_counter(); behind = view.feed.behind()
        view._post()  # as when the cell ends: the reader goes at full speed
        view._thread.join(600)
        w = view.widget
        out |= dict(updates=view.updates, points_sent=view.points_sent, max_points_in_an_update=view.max_points_sent,
                    behind_at_loop_end_kb=behind/1024, catch_up_s=time.perf_counter() - t, counted=w.metrics['loss']['n'] + w.metrics['acc']['n'],
                    curve_points={k: len(v) for k, v in w.series.items()}, last_loss=w.metrics['loss']['last'])
        assert out['counted'] == n and out['last_loss'] == 1/(n // 2), out  # the view saw every point, and the last value
    return out


def _first_view(settings):
    "What the first view adds to the first `%mlops track` of a kernel: anywidget's import and the widget (IPython is loaded already)."
    import IPython, ipykernel.ipkernel  # noqa: F401 -- in a kernel they are
    import mlops_nb as mn
    from mlops_nb.tracking.live import LiveView
    run = mn.track(name='first', settings=settings, system_metrics=None); run.capture._thread.join(60)
    t = time.perf_counter(); import anywidget  # noqa: F401
    t1 = time.perf_counter(); view = LiveView(run, settle=0); view.widget; t2 = time.perf_counter()
    mn.stop(); view._post(); view._thread.join(60)
    return dict(import_anywidget_ms=1000*(t1 - t), view_ms=1000*(t2 - t1))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--metrics', type=int, default=100_000, help="metrics logged per run")
    ap.add_argument('--pairs', type=int, default=15)
    ap.add_argument('--smoke', action='store_true', help="10k metrics, 2 pairs")
    ap.add_argument('--million', action='store_true', help="also one run of 1M metrics with the view")
    a = ap.parse_args(argv)
    if a.smoke: a.metrics, a.pairs = 10_000, 2
    from mlops_nb.core.config import resolve_settings
    d = Path(tempfile.mkdtemp(prefix='bench-live-'))
    (d/'pyproject.toml').write_text('[project]\nname = "bench-live"\n')
    s = resolve_settings(project_dir=d, env={}, cache_dir=str(d/'cache'))
    first = _first_view(s)
    _run(s, 2000, True, 'warm-up'); _run(s, 2000, False, 'warm-up')  # imports, first journal pages, anywidget
    without, with_, ratios, views = [], [], [], []
    for p in range(a.pairs):
        order = (False, True) if p % 2 == 0 else (True, False)
        got = {v: _run(s, a.metrics, v, f"pair{p}-{'view' if v else 'plain'}") for v in order}
        without.append(got[False]['seconds']); with_.append(got[True]['seconds']); views.append(got[True])
        ratios.append(got[True]['seconds']/got[False]['seconds'])
        print(f"pair {p}: without {got[False]['seconds']:.3f} s, with the view {got[True]['seconds']:.3f} s ({ratios[-1]:.3f}x); "
              f"view thread on a CPU {100*(got[True]['thread_cpu_share'] or 0):.1f} % of the loop; sent {got[True]['updates']} updates, {got[True]['points_sent']} points (at most {got[True]['max_points_in_an_update']} in one)", flush=True)
    med = lambda xs: statistics.median(xs)
    res = dict(metrics=a.metrics, pairs=a.pairs, without_s=med(without), with_view_s=med(with_),
               ratio_of_medians=med(with_)/med(without), median_pair_ratio=med(ratios),
               us_per_metric_without=1e6*med(without)/a.metrics, us_per_metric_with=1e6*med(with_)/a.metrics,
               updates=med([v['updates'] for v in views]), points_sent=med([v['points_sent'] for v in views]),
               max_points_in_an_update=max(v['max_points_in_an_update'] for v in views),
               curve_points=views[-1]['curve_points'], catch_up_s=med([v['catch_up_s'] for v in views]),
               behind_at_loop_end_kb=med([v['behind_at_loop_end_kb'] for v in views]), first_view=first,
               view_thread_cpu_share=med([v['thread_cpu_share'] or 0 for v in views]))
    if a.million:
        m = _run(s, 1_000_000, True, 'million')
        res['million'] = {k: (round(v, 3) if k.endswith(('_s', 'seconds', '_kb')) else v) for k, v in m.items()}
    print(json.dumps(res, indent=1))
    print(f"\nlogging {a.metrics} metrics: {res['without_s']:.3f} s without the view, {res['with_view_s']:.3f} s with it: "
          f"{res['ratio_of_medians']:.3f}x (median pair {res['median_pair_ratio']:.3f}x; target <= 1.10); the view's thread was on a CPU "
          f"{100*res['view_thread_cpu_share']:.1f} % of the loop's time (what it can take from the caller under the GIL); "
          f"the browser got {res['points_sent']:.0f} curve points in {res['updates']:.0f} updates, at most {res['max_points_in_an_update']} in one; "
          f"the first view costs {first['import_anywidget_ms']:.0f} ms of import and {first['view_ms']:.0f} ms to make")
    import shutil; shutil.rmtree(d, ignore_errors=True)
    return 0 if a.smoke or res['ratio_of_medians'] <= 1.10 else 1


if __name__ == '__main__':
    sys.exit(main())
