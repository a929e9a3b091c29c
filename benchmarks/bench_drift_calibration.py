"""Drift calibration and power: false-alarm rates with no shift, and detection rates of small shifts, on raw frames and on profiles.

    python benchmarks/bench_drift_calibration.py [--seed 0]        # ~10 minutes on 2 quiet cores (29 min at load 6-12, reduced reps)
    python benchmarks/bench_drift_calibration.py --quick           # fewer repetitions: ~50 s
    python benchmarks/bench_drift_calibration.py --smoke           # 2 repetitions at 1k and 10k, none at 1M: CI runs this so it cannot rot
    python benchmarks/bench_drift_calibration.py --full            # adds 10M rows a side (profiles merged from 1M chunks): ~30 s a repetition (5 by default)
    python benchmarks/bench_drift_calibration.py --reps 1000:200,10000:100 --power-reps 50 --reps-1m 20 --reps-10m 5
    python benchmarks/bench_drift_calibration.py --large --reps-1m 4 --reps-10m 2   # no-shift false alarms at 1M and 10M only, scipy at 1M

Data       the 25-column schema of bench_drift.py (20 numeric: normal, lognormal, exponential, uniform, Poisson(4)
           integers; 5 `str` columns of 5-50 categories), both sides drawn fresh for every repetition from a fixed seed
           (NumPy Generator seeded with [seed, section, n, repetition, side]), so a rerun draws the same data.
           `drift(..., config=DriftConfig(), log=False)`: the defaults (alpha 0.05, BH across columns), whatever a
           pyproject in the working directory says.
Calibration  no shift, n = 1k, 10k, 100k, 1M a side (10M with --full, profiles only). Raw path: the two DataFrames
           (exact KS up to 200k rows a side). Profile-only path: `drift(ref_profile, cur_profile)` on the profiles the
           raw call built (the same as `profile(df)`, `profile(cur, like=ref)`). Per-column false-positive rate
           (column-tests with status `drift`; also `drift` or `minor`, i.e. significant) and dataset-gate false-positive
           rate (repetitions with verdict `drift`; also any significant column), each with a one-sided 95%
           Clopper-Pearson upper bound (column-tests treated as independent). Targets: <= 5% each. Diagnostic: the
           share of each test's own p-value <= 0.05 (before the column's weights and Holm), by column family: about 5%
           when a test is calibrated, far less when it is conservative.
Power      10k rows a side, raw path (the profile path from the same profiles shown too), --power-reps repetitions,
           scipy's uncorrected KS / chi-square on the same frames beside: (i) norm0 mean +0.05 sd (context: one moved
           column of 25), (ii) norm1 sd x1.10, (iii) cat1 3 points of share moved from its largest category to the
           second, (iv) expo0 5% missing, (v) all 20 numeric columns mean +0.05 sd (Poisson: rate +0.1), (vi) all 5
           categorical columns 3 points, (vii) shapes: (v) with the exponential columns drawn as gamma(2). Alerted =
           status `drift`; significant = `drift` or `minor`. Targets (issue 19): (ii) >= 0.99, (iii) and (vi) >= 0.70,
           (iv) 1.00, (v) and (vii) >= 0.85. At 1M rows, profiles only, on the 1M calibration draws: norm0 mean +0.01
           sd, significant (target >= 0.7); +0.03 and +0.04 sd, alerted; +0.05 sd shown for context.
500 categories  no shift, the 25 columns plus a 26th of 500 Zipf categories: how often that column is not stable.
"""
import argparse, math, os, statistics, sys, time, warnings
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_drift import CATEGORICAL, FAMILIES, NUMERIC, family, make_frame, note  # noqa: E402  the same schema

SECTION = dict(calibration=1, power=2, full=3)
FAMS = FAMILIES + ('cat',)


def rng_for(seed, *keys):
    import numpy as np
    return np.random.default_rng([seed, *keys])


def upper95(k, n):
    "One-sided 95% Clopper-Pearson upper bound of a binomial rate."
    from scipy.stats import beta
    return 1.0 if k >= n else float(beta.ppf(0.95, k + 1, n - k))


def pct(k, n, ub=True):
    if n == 0: return '-'
    return f"{k/n:.2%}" + (f" [{upper95(k, n):.2%}]" if ub else '')


def col_family(c): return 'cat' if c in CATEGORICAL else family(c)


def scipy_pvalues(ref, cur):
    "The peer, uncorrected: scipy's `ks_2samp` per numeric column (NaN dropped), `chi2_contingency` of the value counts per text column."
    import numpy as np, pandas as pd
    from scipy.stats import chi2_contingency, ks_2samp
    out = {}
    for c in ref.columns:
        if pd.api.types.is_numeric_dtype(ref[c].dtype):
            a, b = ref[c].to_numpy(dtype=float), cur[c].to_numpy(dtype=float)
            out[c] = float(ks_2samp(a[~np.isnan(a)], b[~np.isnan(b)]).pvalue)
        else:
            t = pd.concat([ref[c].value_counts(), cur[c].value_counts()], axis=1).fillna(0).to_numpy()
            out[c] = float(chi2_contingency(t).pvalue)
    return out


class ScipyTally:
    "No-shift false alarms of the uncorrected peer: column tests with p <= 0.05, and repetitions with any."
    def __init__(self): self.reps = self.any = 0; self.fam = defaultdict(lambda: [0, 0])
    def add(self, ps):
        self.reps += 1; self.any += any(p <= 0.05 for p in ps.values())
        for c, p in ps.items():
            cell = self.fam['cat' if c.startswith('cat') else 'num']; cell[0] += p <= 0.05; cell[1] += 1


class Tally:
    "Counts over the repetitions of one (n, path): column statuses, verdicts, and each test's raw p <= 0.05."
    def __init__(self):
        self.reps = self.cols = self.col_drift = self.col_sig = self.gate_drift = self.gate_sig = 0
        self.p05 = defaultdict(lambda: [0, 0])  # (test, family) -> [p <= 0.05, tests]
        self.fired = Counter()  # (column, status, main test)
        self.seconds = []

    def add(self, rep, seconds):
        self.reps += 1; self.seconds.append(seconds)
        self.gate_drift += rep.verdict == 'drift'; self.gate_sig += rep.verdict != 'stable'
        for c in rep.columns:
            if not c.tests: continue
            self.cols += 1
            self.col_drift += c.status == 'drift'; self.col_sig += c.status in ('drift', 'minor')
            if c.status in ('drift', 'minor'): self.fired[(c.column, c.status, c.main.test)] += 1
            for t in c.tests:
                cell = self.p05[(t.test, col_family(c.column))]; cell[0] += t.p_value <= 0.05; cell[1] += 1


def replace_column(prof, col):
    from mlops_nb.monitoring.profiles import Profile
    return Profile({**prof.columns, col.name: col}, prof.rows, dict(prof.meta))


# -- calibration ------------------------------------------------------------------------------------------------------
def calibration(sizes, reps, seed, cfg, big_shifts, full_reps, scipy_rows=100_000):
    from mlops_nb.monitoring.drift import drift
    from mlops_nb.monitoring.profiles import profile
    tallies, big, sp = {}, defaultdict(list), {}  # big: shift -> [(significant, alerted, p, effect_upper of the mean test)]
    for n in sizes:
        R = reps[n]; raw_t, prof_t, sp_t = Tally(), Tally(), ScipyTally()
        note(f"calibration: {n:,} rows a side, {R} repetitions" + (" (+ shifted norm0 on the profiles)" if n == 1_000_000 else ''))
        for r in range(R):
            ref = make_frame(n, rng_for(seed, SECTION['calibration'], n, r, 0))
            cur = make_frame(n, rng_for(seed, SECTION['calibration'], n, r, 1))
            t = time.perf_counter(); rep = drift(ref, cur, config=cfg, log=False); raw_t.add(rep, time.perf_counter() - t)
            if n <= scipy_rows: sp_t.add(scipy_pvalues(ref, cur))
            pr, pc = rep.reference, rep.current
            t = time.perf_counter(); prep = drift(pr, pc, config=cfg, log=False); prof_t.add(prep, time.perf_counter() - t)
            if n == 1_000_000:
                for s in big_shifts:
                    col = profile((cur['norm0'] + s).to_frame(), like=pr, kll_k=cfg.kll_k)['norm0']
                    c = drift(pr, replace_column(pc, col), config=cfg, log=False)['norm0']
                    mean = next(t for t in c.tests if t.test == 'mean')
                    big[s].append((c.status in ('drift', 'minor'), c.status == 'drift', c.p_value, mean.effect_upper))
        tallies[(n, 'raw')], tallies[(n, 'profiles')] = raw_t, prof_t
        if sp_t.reps: sp[n] = sp_t
    if full_reps:
        n, chunk = 10_000_000, 1_000_000; t10 = Tally()
        note(f"calibration: {n:,} rows a side (profiles of {n//chunk} chunks of {chunk:,} merged), {full_reps} repetitions")
        for r in range(full_reps):
            sides = []
            for side in (0, 1):
                parts = [profile(make_frame(chunk, rng_for(seed, SECTION['full'], r, side, k)), like=sides[0] if sides else None,
                               kll_k=cfg.kll_k) for k in range(n // chunk)]
                p = parts[0]
                for q in parts[1:]: p = p + q
                sides.append(p)
            t = time.perf_counter(); rep = drift(*sides, config=cfg, log=False); t10.add(rep, time.perf_counter() - t)
        tallies[(n, 'profiles')] = t10
    return tallies, big, sp


def zipf_column(n, k, rng):
    "`n` draws of `k` categories with Zipf shares, as pandas `str`."
    import numpy as np, pandas as pd
    p = 1/np.arange(1, k + 1); p /= p.sum()
    idx = np.minimum(np.searchsorted(np.cumsum(p), rng.random(n), side='right'), k - 1)
    return pd.Series(np.array([f'c{m}' for m in range(k)], dtype=object)[idx]).astype('str')


def many_categories(n, R, seed, cfg, k=500):
    "No shift, the 25 columns plus one of `k` Zipf categories (most rare): how often that column is `minor` or `drift`."
    import pandas as pd
    from mlops_nb.monitoring.drift import drift
    from scipy.stats import chi2_contingency
    st, peer = Counter(), 0
    note(f"calibration: the 25 columns + one of {k} categories, {n:,} rows a side, {R} repetitions")
    for r in range(R):
        ref = make_frame(n, rng_for(seed, 4, n, r, 0)).assign(cat500=zipf_column(n, k, rng_for(seed, 4, n, r, 2)))
        cur = make_frame(n, rng_for(seed, 4, n, r, 1)).assign(cat500=zipf_column(n, k, rng_for(seed, 4, n, r, 3)))
        st[drift(ref, cur, config=cfg, log=False)['cat500'].status] += 1
        t = pd.concat([ref.cat500.value_counts(), cur.cat500.value_counts()], axis=1).fillna(0).to_numpy()
        peer += chi2_contingency(t).pvalue <= 0.05
    return st, peer, R


# -- power ----------------------------------------------------------------------------------------------------------
SCENARIOS = [  # label, change to the current side, target columns, target (alerted share)
    ('(i) norm0 mean +0.05 sd (one column)', dict(mean={'norm0': 0.05}), ['norm0'], None),  # context: see the README
    ('(ii) norm1 sd x1.10', dict(scale={'norm1': 1.10}), ['norm1'], 0.99),
    ('(iii) cat1 3 points of share moved', dict(share={'cat1': 0.03}), ['cat1'], 0.70),
    ('(iv) expo0 5% missing', dict(missing={'expo0': 0.05}), ['expo0'], 1.00),
    ('(v) all 20 numeric mean +0.05 sd', dict(mean={c: 0.05 for c in NUMERIC}), NUMERIC, 0.85),
    ('(vi) all 5 categorical, 3 points moved', dict(share={c: 0.03 for c in CATEGORICAL}), CATEGORICAL, 0.70),
    ('(vii) shapes: 20 numeric mean +0.05 sd', dict(mean={c: 0.05 for c in NUMERIC}, shapes=True), NUMERIC, 0.85),
]
SHAPES = dict(norm='normal', lognorm='lognormal(0, 0.5)', expo='gamma(2)', unif='uniform', pois='Poisson(4)')  # (vii): expo columns drawn as gamma(2)


def shape_frame(n, rng, shift):
    "The 25-column frame with its exponential columns replaced by gamma(2) ones, every numeric column's mean moved `shift` sd."
    import numpy as np
    df = make_frame(n, rng, dict(mean={c: shift for c in NUMERIC}) if shift else None)
    for c in NUMERIC:
        if family(c) == 'expo': df[c] = rng.gamma(2.0, 1.0, n) + shift*math.sqrt(2.0)
    return df


def power(n, R, seed, cfg):
    from mlops_nb.monitoring.drift import drift
    out = []
    for k, (label, change, targets, goal) in enumerate(SCENARIOS):
        note(f"power: {label}, {n:,} rows a side, {R} repetitions")
        res = {path: dict(alert=0, sig=0, other=0, others=0, gate=0, fam=Counter(), famn=Counter(), p=[], main=Counter())
               for path in ('raw', 'profiles', 'scipy')}
        for r in range(R):
            if change.get('shapes'):
                ref = shape_frame(n, rng_for(seed, SECTION['power'], k, r, 0), 0.0)
                cur = shape_frame(n, rng_for(seed, SECTION['power'], k, r, 1), 0.05)
            else:
                ref = make_frame(n, rng_for(seed, SECTION['power'], k, r, 0))
                cur = make_frame(n, rng_for(seed, SECTION['power'], k, r, 1), change)
            rep = drift(ref, cur, config=cfg, log=False)
            d = res['scipy']; ps = scipy_pvalues(ref, cur); hit = {c: p <= 0.05 for c, p in ps.items()}
            d['gate'] += any(hit.values())
            for c, h in hit.items():
                if c in targets: d['alert'] += h; d['sig'] += h; d['fam'][col_family(c)] += h; d['famn'][col_family(c)] += 1
                else: d['other'] += h; d['others'] += 1
            for path, rp in (('raw', rep), ('profiles', drift(rep.reference, rep.current, config=cfg, log=False))):
                d = res[path]; d['gate'] += rp.verdict == 'drift'
                for c in rp.columns:
                    if c.column in targets:
                        d['alert'] += c.status == 'drift'; d['sig'] += c.status in ('drift', 'minor'); d['p'].append(c.p_value)
                        d['fam'][col_family(c.column)] += c.status == 'drift'; d['famn'][col_family(c.column)] += 1
                        if c.status in ('drift', 'minor'): d['main'][f"{c.main.test}{'' if c.main.material else '(not material)'}"] += 1
                    elif c.tests:
                        d['other'] += c.status == 'drift'; d['others'] += 1
        out.append((label, targets, goal, R, res))
    return out


# -- report ---------------------------------------------------------------------------------------------------------
def report(a, tallies, big, pw, cfg, sp, many):
    verdicts = []
    print(f"\ndrift calibration and power; seed {a.seed}; defaults: alpha {cfg.alpha} ({cfg.correction}), floors mean "
          f"{cfg.mean_floor} sd, sd ratio {cfg.std_floor}, W1 {cfg.wasserstein_floor} sd, share {cfg.share_floor}, "
          f"missing {cfg.missing_floor}; exact KS up to {cfg.exact_ks_rows:,} rows a side; kll_k {cfg.kll_k}")
    print(f"\nno shift: false-positive rates, % [one-sided 95% upper bound]   (targets: <= 5% each)")
    H = f"{'rows a side':>12} {'path':<9}{'reps':>5}{'col-tests':>10}{'col drift':>19}{'col signif.':>19}{'gate drift':>19}{'gate signif.':>19}{'s/call':>8}"
    print(H)
    for (n, path), t in tallies.items():
        print(f"{n:>12,} {path:<9}{t.reps:>5}{t.cols:>10}{pct(t.col_drift, t.cols):>19}{pct(t.col_sig, t.cols):>19}"
              f"{pct(t.gate_drift, t.reps):>19}{pct(t.gate_sig, t.reps):>19}{statistics.median(t.seconds):>8.3f}")
        if n in sp:
            q = sp[n]; k = sum(c[0] for c in q.fam.values()); m = sum(c[1] for c in q.fam.values())
            print(f"{'':>12} {'scipy':<9}{q.reps:>5}{m:>10}{pct(k, m):>19}{'':>19}{pct(q.any, q.reps):>19}{'':>19}   "
                  f"(ks_2samp / chi2_contingency, p <= 0.05, no correction: numeric {q.fam['num'][0]/q.fam['num'][1]:.1%}, "
                  f"categorical {q.fam['cat'][0]/q.fam['cat'][1]:.1%})")
        col_ok = upper95(t.col_sig, t.cols) <= 0.05; gate_ok = upper95(t.gate_sig, t.reps) <= 0.05
        verdicts.append((f"no-shift FPR {n:,} {path}, drift or minor: column {t.col_sig/t.cols:.2%} (UB {upper95(t.col_sig, t.cols):.2%}), "
                         f"dataset {t.gate_sig/t.reps:.1%} (UB {upper95(t.gate_sig, t.reps):.1%})",
                         'met' if col_ok and gate_ok else 'met*'
                         if t.col_sig/t.cols <= 0.05 and t.gate_sig/t.reps <= 0.05 else 'MISSED'))
    print(f"  gate drift = verdict 'drift' (a column drifts: significant after {cfg.correction} AND material); gate signif. = verdict "
          "not 'stable' (a column drift or minor). s/call = median seconds of one drift() call (raw: profiles built inside)")
    st, peer, R = many or (Counter(), 0, 0)
    if many: print(f"\nno shift, the 25 columns + a 26th of 500 Zipf categories (most rare; new ones appear by sampling alone), {a.power_rows:,} rows a side, that column: "
          + ', '.join(f"{k} {v}" for k, v in st.most_common()) + f" of {R}; scipy chi2_contingency p <= 0.05: {peer} of {R}")
    if many: verdicts.append((f"500-category column, no shift: minor or drift in {st['minor'] + st['drift']} of {R}",
                              'met' if (st['minor'] + st['drift'])/R <= 0.05 else 'MISSED'))
    print(f"\nwhat fired with no shift (column status, the test that drove it: times)")
    for (n, path), t in tallies.items():
        if t.fired:
            print(f"  {n:>10,} {path:<9} " + ', '.join(f"{c} {s} by {m}: {k}" for (c, s, m), k in t.fired.most_common(8)))
    if not any(t.fired for t in tallies.values()): print("  nothing")

    print(f"\nno shift: share of each test's own p-value <= 0.05 (before weights and Holm; ~5.0% if calibrated), by family")
    tests = [('mean', FAMILIES), ('variance', FAMILIES), ('ks', FAMILIES), ('chi2', ('cat',)), ('unseen', ('cat',))]
    print(f"{'rows a side':>12} {'path':<9}{'test':<9}" + ''.join(f"{f:>9}" for f in FAMS) + f"{'tests':>8}")
    for (n, path), t in tallies.items():
        for test, fams in tests:
            cells = [t.p05.get((test, f)) for f in FAMS]
            if not any(cells): continue
            tot = sum(c[1] for c in cells if c)
            print(f"{n:>12,} {path:<9}{test:<9}" + ''.join(f"{(c[0]/c[1]):>9.1%}" if c else f"{'':>9}" for c in cells) + f"{tot:>8}")

    if pw: print(f"\npower at {a.power_rows:,} rows a side: share of repetitions where the shifted column is alerted ('drift') "
          f"/ significant ('drift' or 'minor')")
    if pw: print(f"{'scenario':<40}{'reps':>5}{'target':>8}{'alerted':>9}{'signif.':>9}{'prof. alert':>12}{'prof. signif':>13}"
          f"{'others alerted':>15}{'gate':>7}{'scipy':>7}{'scipy others':>13}   what drove it (raw)")
    for label, targets, goal, R, res in pw:
        rw, pf, sq = res['raw'], res['profiles'], res['scipy']; m = R*len(targets)
        print(f"{label:<40}{R:>5}{'-' if goal is None else f'{goal:.2f}':>8}{rw['alert']/m:>9.2f}{rw['sig']/m:>9.2f}{pf['alert']/m:>12.2f}{pf['sig']/m:>13.2f}"
              f"{pct(rw['other'], rw['others'], ub=False):>15}{rw['gate']/R:>7.2f}{sq['alert']/m:>7.2f}{pct(sq['other'], sq['others'], ub=False):>13}   "
              + ', '.join(f"{k} {v}" for k, v in rw['main'].most_common(3)))
        verdicts.append((f"power {label}: alerted {rw['alert']/m:.2f} (target >= {goal or 0:.2f}), significant {rw['sig']/m:.2f}",
                         'info' if goal is None else 'met' if rw['alert']/m >= goal else 'MISSED'))
        if len(targets) > 1 and targets == NUMERIC:
            names = SHAPES if 'shapes' in label else dict(zip(FAMILIES, FAMILIES))
            print(f"{'  alerted by family (raw / profiles / scipy KS)':<40}" + ', '.join(
                f"{names[f]} {rw['fam'][f]/rw['famn'][f]:.2f} / {pf['fam'][f]/pf['famn'][f]:.2f} / {sq['fam'][f]/sq['famn'][f]:.2f}" for f in FAMILIES))
            verdicts.append((f"power {label}: gate (verdict drift) {rw['gate']/R:.2f}", 'info'))
    if pw: print("  per-column rates; (v)-(vii): averaged over their columns; others alerted = unshifted columns with status 'drift'; "
          "gate = verdict 'drift'; scipy = ks_2samp / chi2_contingency at p <= 0.05, uncorrected, same data")

    if big:
        R = len(next(iter(big.values())))
        print(f"\npower at 1,000,000 rows a side, profiles only, norm0 shifted on the {R} no-shift draws above")
        print(f"{'norm0 mean shift':<18}{'signif.':>9}{'alerted':>9}{'median p (adj.)':>17}{'median upper(|d|)/sd':>22}   target")
        goals = {0.01: ('signif.', 0.7), 0.03: ('alerted', 0.0), 0.04: ('alerted', 0.0)}
        for s, rows in big.items():
            sig = sum(r[0] for r in rows)/R; al = sum(r[1] for r in rows)/R
            g = goals.get(s)
            print(f"{f'+{s:g} sd':<18}{sig:>9.2f}{al:>9.2f}{statistics.median(r[2] for r in rows):>17.2e}"
                  f"{statistics.median(r[3] for r in rows):>22.4f}   " + (f"{g[0]} {'>= 0.7' if s == 0.01 else '= 0'}" if g else "(context)"))
            if g:
                v = sig if g[0] == 'signif.' else al
                verdicts.append((f"1M profiles, +{s:g} sd: {g[0]} {v:.2f}", 'met' if (v >= g[1] if s == 0.01 else v == 0) else 'MISSED'))
    print("\nsummary   (met* = point estimate within the target, too few repetitions for the 95% bound to be)")
    for text, v in verdicts: print(f"  {v:<8} {text}")


def parse_reps(s):
    return {int(k): int(v) for k, v in (p.split(':') for p in s.split(','))}


def main():
    warnings.filterwarnings('ignore', message='ks_2samp: Exact calculation unsuccessful')
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--quick', action='store_true', help="fewer repetitions (see the defaults in the code)")
    ap.add_argument('--full', action='store_true', help="add 10M rows a side, profiles only")
    ap.add_argument('--smoke', action='store_true', help="the smallest run that takes every path once (seconds, not minutes); CI runs it so the script cannot rot")
    ap.add_argument('--reps', type=parse_reps, default=None, help="calibration repetitions by size, e.g. 1000:200,10000:100,100000:40")
    ap.add_argument('--reps-1m', type=int, default=None, help="repetitions at 1M rows (calibration and 1M power)")
    ap.add_argument('--reps-10m', type=int, default=None, help="repetitions at 10M rows (with --full)")
    ap.add_argument('--power-reps', type=int, default=None, help="repetitions of each power scenario")
    ap.add_argument('--power-rows', type=int, default=10_000)
    ap.add_argument('--large', action='store_true', help="no-shift false alarms at 1M and 10M rows only (scipy beside at 1M); no power, no 500 categories")
    a = ap.parse_args()
    if a.large:
        a.reps = {1_000: 0, 10_000: 0, 100_000: 0} | (a.reps or {}); a.full = True
        a.reps_1m = 4 if a.reps_1m is None else a.reps_1m; a.reps_10m = 2 if a.reps_10m is None else a.reps_10m
    q = a.quick or a.smoke
    if a.smoke:
        a.reps = {1_000: 2, 10_000: 2, 100_000: 0} | (a.reps or {})
        a.reps_1m = 0 if a.reps_1m is None else a.reps_1m
        a.power_reps = 1 if a.power_reps is None else a.power_reps
        a.power_rows = min(a.power_rows, 2_000)
    reps = {1_000: 20 if q else 200, 10_000: 10 if q else 100, 100_000: 2 if q else 40}
    reps |= a.reps or {}
    reps[1_000_000] = a.reps_1m if a.reps_1m is not None else 1 if q else 20
    sizes = [n for n in sorted(reps) if reps[n] > 0]
    full_reps = (a.reps_10m if a.reps_10m is not None else 2 if q else 5) if a.full else 0
    a.power_reps = a.power_reps if a.power_reps is not None else 4 if q else 50
    from mlops_nb.monitoring.drift import DriftConfig
    cfg = DriftConfig()
    t0 = time.perf_counter()
    tallies, big, sp = calibration(sizes, reps, a.seed, cfg, (0.01, 0.03, 0.04, 0.05), full_reps, 1_000_000 if a.large else 100_000)
    many = None if a.large else many_categories(a.power_rows, 1 if a.smoke else 5 if q else 50, a.seed, cfg)
    t1 = time.perf_counter()
    pw = [] if a.large else power(a.power_rows, a.power_reps, a.seed, cfg)
    t2 = time.perf_counter()
    report(a, tallies, big, pw, cfg, sp, many)
    import numpy, pandas, scipy
    from importlib.metadata import version
    print(f"\nnumpy {numpy.__version__}, pandas {pandas.__version__}, scipy {scipy.__version__}, datasketches "
          f"{version('datasketches')}; KLL compaction is randomised (unseeded), so sketch-based figures can differ slightly "
          f"between runs of the same seed")
    print(f"whole run {t2 - t0:.0f} s (calibration {t1 - t0:.0f} s, power {t2 - t1:.0f} s); load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
