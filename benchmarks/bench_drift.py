"""Drift speed and memory: `mn.drift` on raw frames and on profiles vs scipy and whylogs, measured in one run.

    python benchmarks/bench_drift.py [--rows 1000000] [--repeat 3] [--whylogs-repeat 3] [--seed 0]   # ~5.5 minutes
    python benchmarks/bench_drift.py --quick          # 100k rows a side, 3 repeats: ~1.5 minutes
    python benchmarks/bench_drift.py --skip-whylogs   # whylogs takes ~1 min a repeat at 1M rows
    python benchmarks/bench_drift.py --smoke          # 100k rows a side, 1 repeat: CI runs this so the script cannot rot
    python benchmarks/bench_drift.py --strings object # text as `object` columns, as pandas 2 holds it (its default there)
    /work/venv-pd2/bin/python benchmarks/bench_drift.py --skip-blas1   # on pandas 2 (see benchmarks/README.md: the venv)

Data       `--rows` x 25 columns a side (reference seed, current seed + 1): 20 numeric (4 each of normal, lognormal,
           exponential, uniform, Poisson(4) integers) and 5 pandas `str` columns of 5, 10, 20, 35 and 50 categories
           (Zipf shares). The current frame has 4 shifted columns: norm0 mean +0.2 sd, lognorm1 sd x1.2, cat2 5
           points of share moved between two categories, expo3 3% missing. mlops_nb must find exactly those (the
           script fails otherwise).
Raw        `drift(ref_df, cur_df, log=False)` (profiles built inside; exact KS up to 200k rows a side, sketches
           beyond): wall time and extra peak memory, in a new process per repeat (first call, scipy.stats and
           datasketches imported lazily inside it; then a warm second call). Targets: <= 2 s, <= 50 MB extra.
Profiles   `profile(df)` a side, `save_profile` file size (target: <= 1 MB for 25 columns), `drift(ref_profile,
           cur_profile)` warm (target: <= 100 ms), and a new process reading both files and judging them (wall).
Peers      in the same run, each in new processes: scipy on the raw arrays (`ks_2samp` per numeric column, NaN
           dropped, + `chi2_contingency` of the two sides' value counts per categorical column); whylogs 1.6.4
           (`why.log(df).view()` a side, then `calculate_drift_scores`), warm (a 1000-row log first, untimed).
Extra peak memory: the process's peak RSS (VmHWM, reset through /proc/self/clear_refs just before the call) minus
its RSS just before the call (the frames built, then gc and glibc's malloc_trim so that freed memory is not counted
as free room); where the reset is refused, ru_maxrss minus that RSS. Also tracemalloc's peak of a third, untimed
call (NumPy and Python allocations only). A diagnostic mlops_nb run with OPENBLAS_NUM_THREADS=1 is shown too
(`--skip-blas1` leaves it out): `Moments.of` uses `@` (BLAS ddot), which OpenBLAS threads on 2 busy cores.
Figures are medians of the repeats (the machines here are noisy); building the data is not timed.
"""
import argparse, gc, json, math, os, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path

FAMILIES = ('norm', 'lognorm', 'expo', 'unif', 'pois')
NUMERIC = [f'{f}{i}' for i in range(4) for f in FAMILIES]
CATEGORIES = (5, 10, 20, 35, 50)
CATEGORICAL = [f'cat{j}' for j in range(len(CATEGORIES))]
COLUMNS = NUMERIC + CATEGORICAL
_LN_S = 0.5  # lognormal sigma
MEAN = dict(norm=0.0, lognorm=math.exp(_LN_S**2/2), expo=1.0, unif=0.5, pois=4.0)  # of each family, to shift in sd units
SD = dict(norm=1.0, lognorm=math.sqrt((math.exp(_LN_S**2) - 1)*math.exp(_LN_S**2)), expo=1.0, unif=12**-0.5, pois=2.0)
SHIFTED = dict(mean={'norm0': 0.2}, scale={'lognorm1': 1.2}, share={'cat2': 0.05}, missing={'expo3': 0.03})
EXPECTED = sorted(c for d in SHIFTED.values() for c in d)
STRINGS = 'default'  # `--strings object`: text as Python objects on pandas 3 too (what pandas 2 holds by default)


def note(msg): print(f"  .. {msg}", file=sys.stderr, flush=True)
def median(xs): return statistics.median(xs)
def family(col): return col.rstrip('0123456789')


def make_frame(n, rng, change=None):
    """`n` rows of the 25-column schema from NumPy Generator `rng`. `change`: {'mean': {col: shift in sd},
    'scale': {col: sd factor}, 'share': {col: points moved from the largest category to the second},
    'missing': {col: share of values set to NaN}}. A Poisson column's mean shift changes its rate (it stays integer)."""
    import numpy as np, pandas as pd, pyarrow as pa
    ch = change or {}
    mean, scale, share, missing = (ch.get(k, {}) for k in ('mean', 'scale', 'share', 'missing'))
    cols = {}
    for c in NUMERIC:
        f, d = family(c), mean.get(c, 0.0)
        if f == 'norm': x = rng.standard_normal(n)
        elif f == 'lognorm': x = np.exp(_LN_S*rng.standard_normal(n))
        elif f == 'expo': x = rng.standard_exponential(n)
        elif f == 'unif': x = rng.random(n)
        else: x = rng.poisson(MEAN['pois'] + d*SD['pois'], n)
        if d and f != 'pois': x += d*SD[f]
        if c in scale: x = (MEAN[f] + d*SD[f]) + (x - (MEAN[f] + d*SD[f]))*scale[c]
        if c in missing:
            x = x.astype('float64'); x[rng.choice(n, int(round(missing[c]*n)), replace=False)] = np.nan
        cols[c] = x
    for c, k in zip(CATEGORICAL, CATEGORIES):
        p = 1/np.arange(1, k + 1); p /= p.sum()
        if c in share: p[0] -= share[c]; p[1] += share[c]
        idx = np.minimum(np.searchsorted(np.cumsum(p), rng.random(n), side='right'), k - 1)
        names = pa.array([f'{c}_{m}' for m in range(k)])
        cols[c] = pd.array(names.take(pa.array(idx)), dtype='str')  # pandas 3: its `str` dtype; pandas 2: `object` strings
        if STRINGS == 'object': cols[c] = np.asarray(cols[c], dtype=object)
    return pd.DataFrame(cols)


def frames(rows, seed):
    import numpy as np
    return make_frame(rows, np.random.default_rng(seed)), make_frame(rows, np.random.default_rng(seed + 1), SHIFTED)


# -- memory ---------------------------------------------------------------------------------------------------------
def _status(key):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'): return int(line.split()[1])/1024
    return None


def _trim():
    "Give the allocator's free memory back to the OS (glibc), so that the RSS before a call holds only live data."
    try:
        import ctypes
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError): pass


class Peak:
    "Extra peak RSS of a block: VmHWM reset through /proc/self/clear_refs, else ru_maxrss, minus the RSS before it."
    def __enter__(self):
        gc.collect(); _trim()
        self.before = _status('VmRSS') or 0.0
        try:
            with open('/proc/self/clear_refs', 'w') as f: f.write('5')
            self.how = 'VmHWM'
        except OSError: self.how = 'ru_maxrss'
        return self
    def __exit__(self, *exc):
        peak = _status('VmHWM') if self.how == 'VmHWM' else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024
        self.mb = peak - self.before


def traced_peak(call):
    "tracemalloc's peak during `call()`, in MB: Python and NumPy allocations (not pyarrow's or DataSketches' C++ ones)."
    import tracemalloc
    gc.collect(); tracemalloc.start()
    try: call(); return tracemalloc.get_traced_memory()[1]/2**20
    finally: tracemalloc.stop()


# -- children: one new process per repeat -----------------------------------------------------------------------------
def child_ours(rows, seed, tmp):
    t = time.perf_counter()
    from mlops_nb.monitoring.drift import drift, DriftConfig
    from mlops_nb.monitoring.profiles import profile, save_profile, read_profile
    out = dict(import_s=time.perf_counter() - t)
    t = time.perf_counter(); ref, cur = frames(rows, seed); out['build_s'] = time.perf_counter() - t
    out['frames_mb'] = _status('VmRSS')
    cfg = DriftConfig()  # the defaults, whatever a pyproject in the working directory says
    for key in ('first', 'warm'):
        with Peak() as m:
            t = time.perf_counter(); c0 = time.process_time(); rep = drift(ref, cur, config=cfg, log=False)
            s = time.perf_counter() - t; cpu = time.process_time() - c0
        out[f'raw_{key}_s'], out[f'raw_{key}_cpu'], out[f'raw_{key}_mb'], out['mem_how'] = s, cpu, m.mb, m.how
        out['dtype'] = str(ref[CATEGORICAL[0]].dtype)
        out['verdict'], out['drifted'] = rep.verdict, sorted(rep.drifted)
        del rep
    out['raw_tm_mb'] = traced_peak(lambda: drift(ref, cur, config=cfg, log=False))
    prof_s = []
    for name, df in (('reference', ref), ('current', cur)):
        with Peak() as m:
            t = time.perf_counter(); p = profile(df, name=name, like=None if name == 'reference' else pr); prof_s.append(time.perf_counter() - t)
        out[f'profile_{name}_mb'] = m.mb
        if name == 'reference': pr = p
        else: pc = p
    out['profile_s'] = prof_s
    paths = [save_profile(p, Path(tmp)/f'{n}.profile.json') for n, p in (('reference', pr), ('current', pc))]
    out['sizes'] = [p.stat().st_size for p in paths]
    t = time.perf_counter(); read = [read_profile(p) for p in paths]; out['read_s'] = time.perf_counter() - t
    times = []
    for _ in range(7):
        t = time.perf_counter(); rep = drift(pr, pc, config=cfg, log=False); times.append(time.perf_counter() - t)
    out['prof_drift_s'] = median(times)
    out['prof_drifted'] = sorted(rep.drifted)
    out['read_drifted'] = sorted(drift(*read, config=cfg, log=False).drifted)
    out['paths'] = [str(p) for p in paths]
    return out


COLD_PROFILES = """
import json, sys, time
t0 = time.perf_counter()
from mlops_nb.monitoring.drift import drift, DriftConfig
from mlops_nb.monitoring.profiles import read_profile
t1 = time.perf_counter()
r, c = read_profile(sys.argv[1]), read_profile(sys.argv[2])
t2 = time.perf_counter()
rep = drift(r, c, config=DriftConfig(), log=False)
t3 = time.perf_counter()
print(json.dumps(dict(import_s=t1 - t0, read_s=t2 - t1, drift_s=t3 - t2, drifted=sorted(rep.drifted))))
"""


def scipy_drift(ref, cur):
    "p-values of ks_2samp per numeric column (NaN dropped) and chi2_contingency per categorical column."
    import numpy as np, pandas as pd
    from scipy.stats import ks_2samp, chi2_contingency
    out = {}
    for c in NUMERIC:
        a, b = ref[c].to_numpy(dtype='float64'), cur[c].to_numpy(dtype='float64')
        out[c] = float(ks_2samp(a[~np.isnan(a)], b[~np.isnan(b)]).pvalue)
    for c in CATEGORICAL:
        t = pd.concat([ref[c].value_counts(), cur[c].value_counts()], axis=1).fillna(0).to_numpy().T
        out[c] = float(chi2_contingency(t).pvalue)
    return out


def holm(ps, alpha=0.05):
    order = sorted(ps, key=ps.get); m = len(ps); out = []
    for rank, c in enumerate(order):
        if ps[c]*(m - rank) > alpha: break
        out.append(c)
    return sorted(out)


def child_scipy(rows, seed):
    import scipy.stats  # noqa: F401  imported up front: the first call below still pays its lazy parts
    ref, cur = frames(rows, seed); out = dict(frames_mb=_status('VmRSS'))
    for key in ('first', 'warm'):
        with Peak() as m:
            t = time.perf_counter(); ps = scipy_drift(ref, cur); s = time.perf_counter() - t
        out[f'{key}_s'], out[f'{key}_mb'] = s, m.mb
    out['tm_mb'] = traced_peak(lambda: scipy_drift(ref, cur))
    out['p05'] = sorted(c for c, p in ps.items() if p <= 0.05); out['holm'] = holm(ps)
    return out


def whylogs_import():
    "whylogs 1.6.4 under NumPy 2: `np.unicode_` is the only removed alias it looks up (while logging), added if missing."
    import numpy as np
    if 'unicode_' not in np.__dict__:
        try: np.unicode_
        except AttributeError: np.unicode_ = np.str_
    import whylogs as why
    from whylogs.viz.drift.column_drift_algorithms import calculate_drift_scores
    return why, calculate_drift_scores


def child_whylogs(rows, seed):
    import logging, warnings
    logging.disable(logging.WARNING); warnings.simplefilter('ignore')
    why, scores_of = whylogs_import()
    ref, cur = frames(rows, seed); out = dict(frames_mb=_status('VmRSS'))
    small = [df.iloc[:1000] for df in (ref, cur)]  # warm-up, untimed
    scores_of(target_view=why.log(small[1]).view(), reference_view=why.log(small[0]).view(), with_thresholds=True)
    with Peak() as m:
        t0 = time.perf_counter(); vr = why.log(ref).view()
        t1 = time.perf_counter(); vc = why.log(cur).view()
        t2 = time.perf_counter(); sc = scores_of(target_view=vc, reference_view=vr, with_thresholds=True)
        t3 = time.perf_counter()
    out.update(log_ref_s=t1 - t0, log_cur_s=t2 - t1, score_s=t3 - t2, total_s=t3 - t0, total_mb=m.mb, mem_how=m.how)
    t = time.perf_counter(); sizes = [len(v.serialize()) for v in (vr, vc)]; out['serialize_s'] = (time.perf_counter() - t)/2
    out['sizes'] = sizes
    out['drift'] = sorted(c for c, s in sc.items() if s and s.get('drift_category') == 'DRIFT')
    out['possible'] = sorted(c for c, s in sc.items() if s and s.get('drift_category') == 'POSSIBLE_DRIFT')
    out['algorithms'] = sorted({s['algorithm'] for s in sc.values() if s})
    # scoring alone, again (the profile-only peer): a second call, views already built
    t = time.perf_counter(); scores_of(target_view=vc, reference_view=vr, with_thresholds=True); out['score2_s'] = time.perf_counter() - t
    return out


def run_child(kind, rows, seed, tmp, env=None):
    args = [sys.executable, __file__, '--child', kind, '--rows', str(rows), '--seed', str(seed), '--tmp', tmp, '--strings', STRINGS]
    t = time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.stderr.write(p.stderr); raise SystemExit(f"the {kind} child failed (exit {p.returncode})")
    return json.loads(p.stdout.strip().splitlines()[-1]) | dict(wall_s=wall)


# -- report ---------------------------------------------------------------------------------------------------------
def fmt_s(x): return f"{x*1000:.0f} ms" if x < 1 else f"{x:.2f} s"
def rng_s(xs): return f"{fmt_s(min(xs))}-{fmt_s(max(xs))}"


def report(a, ours, sp, wl, cold, blas1):
    W = 58
    med = lambda rs, k: median([r[k] for r in rs])
    print(f"\ndrift: {a.rows:,} rows x 25 columns a side (20 numeric, 5 str), 4 shifted columns; seed {a.seed}; "
          f"{len(ours)} repeats, each in a new process; ratio = mlops_nb / peer (below 1: mlops_nb is faster)")
    print(f"\n{'raw frames -> verdict':<{W}}{'median':>10}{'min-max':>18}{'extra peak':>12}{'mlops_nb/peer':>15}")
    row = lambda name, xs, mb, ratio='': print(f"{name:<{W}}{fmt_s(median(xs)):>10}{rng_s(xs):>18}"
                                                f"{(f'{mb:.0f} MB' if mb is not None else ''):>12}{ratio:>15}")
    ow = [r['raw_warm_s'] for r in ours]
    row(f"mlops_nb drift(ref_df, cur_df), warm   (target <= 3 s, 50 MB)", ow, med(ours, 'raw_warm_mb'))
    print(f"{'  CPU time of that call (process_time; wall = CPU on a quiet machine)':<{W}}{fmt_s(med(ours, 'raw_warm_cpu')):>10}"
          f"   text columns held as pandas `{ours[0]['dtype']}`")
    print(f"{'  tracemalloc peak of the call (NumPy and Python only)':<{W}}{'':>28}{med(ours, 'raw_tm_mb'):>10.0f} MB"
          + (f"   scipy's: {med(sp, 'tm_mb'):.0f} MB" if sp else ''))
    row("mlops_nb, first call in a new process (lazy imports in)", [r['raw_first_s'] for r in ours], med(ours, 'raw_first_mb'))
    if blas1:
        row("mlops_nb, warm, OPENBLAS_NUM_THREADS=1 (diagnostic)", [r['raw_warm_s'] for r in blas1], med(blas1, 'raw_warm_mb'))
    if sp:
        sw = [r['warm_s'] for r in sp]
        row("scipy ks_2samp x20 + chi2_contingency x5, warm", sw, med(sp, 'warm_mb'), f"{median(ow)/median(sw):.2f}x")
        row("scipy, first call", [r['first_s'] for r in sp], med(sp, 'first_mb'))
    if wl:
        wt = [r['total_s'] for r in wl]
        row("whylogs why.log(df).view() x2 + calculate_drift_scores", wt, med(wl, 'total_mb'), f"{median(ow)/median(wt):.3f}x")
        print(f"{'  of which why.log ref / cur, scoring':<{W}}{fmt_s(med(wl, 'log_ref_s'))} / {fmt_s(med(wl, 'log_cur_s'))}, "
              f"{fmt_s(med(wl, 'score_s'))}")
    print(f"\n{'profiles':<{W}}{'median':>10}{'min-max':>18}{'extra peak':>12}{'mlops_nb/peer':>15}")
    pa = [r['profile_s'][0] for r in ours]
    wl_log = [r['log_ref_s'] for r in wl]
    row("mlops_nb profile(ref_df)", pa, med(ours, 'profile_reference_mb'),
        f"{median(pa)/median(wl_log):.3f}x" if wl else '')
    row("mlops_nb profile(cur_df, like=ref)", [r['profile_s'][1] for r in ours], med(ours, 'profile_current_mb'))
    if blas1: row("mlops_nb profile(ref_df), OPENBLAS_NUM_THREADS=1 (diagnostic)", [r['profile_s'][0] for r in blas1], None)
    if wl: row("whylogs why.log(ref_df).view()", wl_log, None)
    pd_ = [r['prof_drift_s'] for r in ours]
    row("mlops_nb drift(ref_prof, cur_prof), warm   (target <= 100 ms)", pd_, None,
        f"{median(pd_)/median([r['score2_s'] for r in wl]):.4f}x" if wl else '')
    if wl: row("whylogs calculate_drift_scores(views), 2nd call", [r['score2_s'] for r in wl], None)
    if cold:
        row("new process: import + read_profile x2 + drift (wall)", [r['wall_s'] for r in cold], None)
        print(f"{'  of which import / read both / drift':<{W}}{fmt_s(med(cold, 'import_s'))} / {fmt_s(med(cold, 'read_s'))}"
              f" / {fmt_s(med(cold, 'drift_s'))}")
    sz = ours[0]['sizes']
    line = (f"{'profile file size ref / cur   (target <= 1 MB)':<{W}}{sz[0]/1e6:.3f} / {sz[1]/1e6:.3f} MB (JSON; read both "
            f"{fmt_s(med(ours, 'read_s'))})")
    if wl: line += f"; whylogs .bin {wl[0]['sizes'][0]/1e6:.3f} / {wl[0]['sizes'][1]/1e6:.3f} MB"
    print(line)

    print(f"\nresults (expected drift: {', '.join(EXPECTED)})")
    ok = True
    for label, key in (('mlops_nb raw', 'drifted'), ('mlops_nb profiles', 'prof_drifted'), ('mlops_nb profile files', 'read_drifted')):
        got = {tuple(r[key]) for r in ours}
        good = got == {tuple(EXPECTED)}; ok &= good
        print(f"  {label:<24} drift: {' | '.join(', '.join(g) or '-' for g in got)}  {'ok' if good else 'WRONG'}"
              + (f"  (verdict {', '.join(sorted({r['verdict'] for r in ours}))})" if key == 'drifted' else ''))
    if cold:
        got = {tuple(r['drifted']) for r in cold}; good = got == {tuple(EXPECTED)}; ok &= good
        print(f"  {'mlops_nb new process':<24} drift: {' | '.join(', '.join(g) for g in got)}  {'ok' if good else 'WRONG'}")
    if sp:
        print(f"  {'scipy p <= 0.05':<24} {len(sp[0]['p05'])} columns: {', '.join(sp[0]['p05'])}")
        print(f"  {'scipy, Holm at 0.05':<24} {len(sp[0]['holm'])} columns: {', '.join(sp[0]['holm'])}")
    if wl:
        for r in wl[:3]:
            print(f"  {'whylogs DRIFT':<24} {len(r['drift'])} columns: {', '.join(r['drift'])}; POSSIBLE_DRIFT {len(r['possible'])}"
                  f" ({', '.join(r['algorithms'])})")
    print(f"\nmemory: {ours[0]['mem_how']} (peak RSS reset before each call) minus RSS before it (after gc and malloc_trim); the two frames hold "
          f"{median([r['frames_mb'] for r in ours]):.0f} MB of RSS (with the interpreter and imports); "
          f"imports of mlops_nb.drift {fmt_s(med(ours, 'import_s'))}; building the frames "
          f"{fmt_s(med(ours, 'build_s'))} (not timed)")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rows', type=int, default=1_000_000, help="rows a side")
    ap.add_argument('--repeat', type=int, default=3, help="new processes for mlops_nb and scipy (medians)")
    ap.add_argument('--whylogs-repeat', type=int, default=None, help="new processes for whylogs (default: --repeat)")
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--quick', action='store_true', help="100k rows a side (unless --rows is given), 3 repeats")
    ap.add_argument('--skip-whylogs', action='store_true')
    ap.add_argument('--smoke', action='store_true', help="the smallest run that takes every path once (seconds, not minutes); CI runs it so the script cannot rot")
    ap.add_argument('--skip-blas1', action='store_true', help="leave out the diagnostic mlops_nb run with OPENBLAS_NUM_THREADS=1")
    ap.add_argument('--strings', choices=('default', 'object'), default='default',
                    help="text columns as pandas' default (pandas 3: `str`; pandas 2: `object`) or as `object` on either")
    ap.add_argument('--child', help=argparse.SUPPRESS)
    ap.add_argument('--tmp', help=argparse.SUPPRESS)
    a = ap.parse_args()
    global STRINGS; STRINGS = a.strings
    try: import whylogs  # noqa: F401
    except ImportError: a.skip_whylogs = True  # e.g. a pandas-2 venv without it
    if a.child:
        if a.child == 'ours': out = child_ours(a.rows, a.seed, a.tmp)
        elif a.child == 'scipy': out = child_scipy(a.rows, a.seed)
        else: out = child_whylogs(a.rows, a.seed)
        print(json.dumps(out)); return 0
    if a.quick and '--rows' not in sys.argv: a.rows = 100_000
    if a.quick and '--repeat' not in sys.argv: a.repeat = 3
    if a.smoke: a.rows, a.repeat, a.whylogs_repeat, a.skip_blas1 = 100_000, 1, 1, True  # at 20k rows cat0 can show as drift: the check fails
    wl_repeat = 0 if a.skip_whylogs else (a.whylogs_repeat if a.whylogs_repeat is not None else a.repeat)
    t0 = time.perf_counter()
    ours, sp, wl, cold, blas1 = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix='bench-drift-') as tmp:
        for i in range(max(a.repeat, wl_repeat)):
            if i < a.repeat:
                note(f"repeat {i + 1}: mlops_nb ({a.rows:,} rows a side)"); ours.append(run_child('ours', a.rows, a.seed, tmp))
                t = time.perf_counter()
                p = subprocess.run([sys.executable, '-c', COLD_PROFILES, *ours[-1]['paths']], capture_output=True, text=True, check=True)
                cold.append(json.loads(p.stdout) | dict(wall_s=time.perf_counter() - t))
                note(f"repeat {i + 1}: scipy"); sp.append(run_child('scipy', a.rows, a.seed, tmp))
                if not a.skip_blas1:
                    note(f"repeat {i + 1}: mlops_nb with OPENBLAS_NUM_THREADS=1 (diagnostic)")
                    blas1.append(run_child('ours', a.rows, a.seed, tmp, env=dict(os.environ, OPENBLAS_NUM_THREADS='1')))
            if i < wl_repeat:
                note(f"repeat {i + 1}: whylogs"); wl.append(run_child('whylogs', a.rows, a.seed, tmp))
    ok = report(a, ours, sp, wl, cold, blas1)
    import numpy, pandas, scipy, datasketches  # noqa: E401  versions, for the record
    vers = f"numpy {numpy.__version__}, pandas {pandas.__version__}, scipy {scipy.__version__}"
    try:
        from importlib.metadata import version
        vers += f", datasketches {version('datasketches')}, whylogs {version('whylogs')}"
    except Exception: pass
    print(f"{vers}; load average {os.getloadavg()[0]:.1f}; whole run {time.perf_counter() - t0:.0f} s")
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
