"""Performance estimation without labels: `mn.estimate_performance` (CBPE, DLE) against NannyML's, on synthetic covariate shift where the truth is known, in one run.

    python benchmarks/bench_drift_performance.py                  # 30 repetitions of each scenario: ~5 minutes with NannyML
    python benchmarks/bench_drift_performance.py --smoke          # 1 repetition of 4,000 / 1,000 rows, without NannyML: seconds
    python benchmarks/bench_drift_performance.py --reps 50 --nannyml-python /tmp/nannyml-venv/bin/python
    python benchmarks/bench_drift_performance.py --scenarios regression --reps 30 --nannyml-reps 5   # DLE; NannyML in 5 of them

NannyML in a venv of its own, outside the checkout (it pins its own dependencies; 0.13.1 also needs statsmodels,
which it does not declare):
    python3 -m venv /tmp/nannyml-venv && /tmp/nannyml-venv/bin/pip install nannyml statsmodels
Without it (`--nannyml-python` missing or failing to import nannyml) the script runs ours alone and says why.

Data       (a) calibrated classifier: x1 ~ N(0, sd), P(y=1) = sigmoid(5 x1), the model's score is that probability;
           reference sd 1 (accuracy ~0.90), 20,000 rows; current sd 0.5 (accuracy ~0.81), 5,000 rows. (b) the same with
           an overconfident score, sigmoid(10 x1): it ranks the same, its probabilities are too sure (both tools check
           calibration on the reference and recalibrate). (c) regression: y = 2 x1 + x2 + noise of sd 0.3 + 0.7 |x1|,
           the prediction 2 x1 + x2; reference sd(x1) 1, current 1.3 (MAE grows ~25 %), 20,000 / 5,000 rows; DLE's
           error model on x1, x2. Every repetition draws new data from a fixed seed.
Method     Both tools get the same frames, the current one without labels; the realized metric is computed here from
           the held-back labels (scikit-learn). Ours: `estimate_performance(ref, cur, ..., log=False)`, band
           `[lower, upper]`. NannyML: `CBPE` / `DLE` with `chunk_size` = the current's rows (one chunk), fitted on the
           reference; band its `lower/upper_confidence_boundary` (value -/+ 3 sampling errors). Alert: ours leaves the
           reference's band (`ref_lower/ref_upper`), NannyML's `alert` (its thresholds from the reference's chunks).
           Timing: one call of each, alternating (ours, then NannyML in its own warm process), seconds per call.
Figures    per metric: median |estimate - realized| (target <= 0.02 for accuracy; <= 2 % of MAE), share of
           repetitions with the realized value inside the band (target >= 0.9), share alerted, median seconds a call.
"""
import argparse, json, math, os, statistics, subprocess, sys, tempfile, textwrap, time
from pathlib import Path

SCENARIOS = ('calibrated', 'overconfident', 'regression')
METRICS = dict(calibrated=('accuracy', 'roc_auc', 'f1'), overconfident=('accuracy', 'roc_auc', 'f1'), regression=('mae', 'rmse'))


def note(msg): print(f"  .. {msg}", file=sys.stderr, flush=True)


def sig(z):
    import numpy as np
    return 1/(1 + np.exp(-z))


def classified(n, sd, seed, overconfident=False):
    import numpy as np, pandas as pd
    g = np.random.default_rng(seed); x1 = g.normal(0, sd, n)
    p = sig(5*x1); y = (g.random(n) < p).astype(int)
    score = sig(10*x1) if overconfident else p
    return pd.DataFrame(dict(x1=x1, x2=g.normal(size=n), score=score, pred=(score >= 0.5).astype(int), label=y))


def regressed(n, sd, seed):
    import numpy as np, pandas as pd
    g = np.random.default_rng(seed); x1, x2 = g.normal(0, sd, n), g.normal(size=n)
    return pd.DataFrame(dict(x1=x1, x2=x2, pred=2*x1 + x2, y=2*x1 + x2 + g.normal(0, 0.3 + 0.7*np.abs(x1), n)))


def data(scenario, r, seed, n_ref=20_000, n_cur=5000):
    if scenario == 'regression': return regressed(n_ref, 1.0, seed*1000 + r), regressed(n_cur, 1.3, seed*1000 + 500 + r), 'y'
    oc = scenario == 'overconfident'
    return classified(n_ref, 1.0, seed*1000 + r, oc), classified(n_cur, 0.5, seed*1000 + 500 + r, oc), 'label'


def realized(scenario, cur):
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
    if scenario == 'regression':
        e = cur.pred - cur.y
        return dict(mae=float(np.abs(e).mean()), rmse=float(np.sqrt((e**2).mean())))
    return dict(accuracy=float(accuracy_score(cur.label, cur.pred)), roc_auc=float(roc_auc_score(cur.label, cur.score)),
                f1=float(f1_score(cur.label, cur.pred)))


def ours(scenario, ref, cur):
    from mlops_nb.monitoring.performance import estimate_performance
    t = time.perf_counter()
    if scenario == 'regression': rep = estimate_performance(ref, cur, prediction='pred', label='y', features=['x1', 'x2'], log=False)
    else: rep = estimate_performance(ref, cur, prediction='pred', proba='score', label='label', log=False)
    s = time.perf_counter() - t
    return {e.metric: dict(value=e.value, lower=e.lower, upper=e.upper, alert=bool(e.alert)) for e in rep.estimates}, s


# NannyML's side: a warm process that reads one request a line (scenario, reference and current Parquet files) and
# answers one JSON line, so its calls alternate with ours.
NANNYML_CHILD = textwrap.dedent('''
    import json, os, sys, time, warnings
    warnings.filterwarnings('ignore')
    out_fd = os.dup(1); os.dup2(2, 1); answer = os.fdopen(out_fd, 'w')  # LightGBM (DLE) prints to fd 1: keep the answers apart
    import pandas as pd, nannyml as nml
    print(json.dumps(dict(ready=nml.__version__)), file=answer, flush=True)
    for line in sys.stdin:
        scenario, ref_path, cur_path = line.split()
        ref, cur = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
        t = time.perf_counter()
        if scenario == 'regression':
            est = nml.DLE(feature_column_names=['x1', 'x2'], y_pred='pred', y_true='y', metrics=['mae', 'rmse'], chunk_size=len(cur))
        else:
            est = nml.CBPE(y_pred_proba='score', y_pred='pred', y_true='label', problem_type='classification_binary',
                           metrics=['accuracy', 'roc_auc', 'f1'], chunk_size=len(cur))
        est.fit(ref); df = est.estimate(cur).filter(period='analysis').to_df()
        s = time.perf_counter() - t
        out = {m: dict(value=float(df[(m, 'value')].iloc[0]), lower=float(df[(m, 'lower_confidence_boundary')].iloc[0]),
                       upper=float(df[(m, 'upper_confidence_boundary')].iloc[0]), alert=bool(df[(m, 'alert')].iloc[0]))
               for m in (['mae', 'rmse'] if scenario == 'regression' else ['accuracy', 'roc_auc', 'f1'])}
        print(json.dumps(dict(result=out, seconds=s)), file=answer, flush=True)
''')


class NannyML:
    "The NannyML child process, or why there is none."
    def __init__(self, python):
        self.proc, self.why, self.version = None, None, None
        if not python or not Path(python).exists():
            self.why = f"no NannyML venv at {python!r} (python3 -m venv /tmp/nannyml-venv && /tmp/nannyml-venv/bin/pip install nannyml statsmodels)"; return
        env = {**os.environ, 'OMP_NUM_THREADS': '1'}  # LightGBM single-threaded, as our error models are: on busy shared cores, spinning OpenMP threads cost 10-100x
        self.proc = subprocess.Popen([python, '-c', NANNYML_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        first = self.proc.stdout.readline()
        if not first:
            err = self.proc.stderr.read().strip().splitlines()
            self.why = f"{python} could not import nannyml: {err[-1] if err else 'no output'}"; self.proc = None; return
        self.version = json.loads(first)['ready']

    def __call__(self, scenario, ref_path, cur_path):
        self.proc.stdin.write(f"{scenario} {ref_path} {cur_path}\n"); self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line: raise RuntimeError(f"NannyML's process ended: {self.proc.stderr.read()[-2000:]}")
        d = json.loads(line); return d['result'], d['seconds']

    def close(self):
        if self.proc: self.proc.stdin.close(); self.proc.wait(30)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--reps', type=int, default=30)
    ap.add_argument('--smoke', action='store_true', help="1 repetition of 4,000 / 1,000 rows, without NannyML (the script cannot rot)")
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--nannyml-python', default='/tmp/nannyml-venv/bin/python')
    ap.add_argument('--nannyml-reps', type=int, default=None, help="NannyML in the first this many repetitions only (default: all)")
    ap.add_argument('--scenarios', default=','.join(SCENARIOS), help=f"comma-separated, of {', '.join(SCENARIOS)}")
    a = ap.parse_args()
    scenarios = [s for s in SCENARIOS if s in a.scenarios.split(',')]
    reps = 1 if a.smoke else a.reps
    rows = (4000, 1000) if a.smoke else (20_000, 5000)
    nml = NannyML(None if a.smoke else a.nannyml_python)
    note(f"NannyML {nml.version}" if nml.proc else f"NannyML not run: {nml.why}")
    res = {(s, tool): [] for s in SCENARIOS for tool in ('ours', 'nannyml')}  # [(estimates, seconds, realized)]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        for s in scenarios:
            note(f"{s}: {reps} repetitions")
            for r in range(reps):
                ref, cur, label = data(s, r, a.seed, *rows)
                truth = realized(s, cur); cur = cur.drop(columns=label)
                if r == 0: ours(s, ref.head(2000), cur.head(500))  # warm: imports, first fits (not timed)
                res[(s, 'ours')].append((*ours(s, ref, cur), truth))
                if nml.proc and (a.nannyml_reps is None or r < a.nannyml_reps):
                    rp, cp = Path(d, 'ref.parquet'), Path(d, 'cur.parquet'); ref.to_parquet(rp); cur.to_parquet(cp)
                    if r == 0: nml(s, rp, cp)  # warm
                    res[(s, 'nannyml')].append((*nml(s, rp, cp), truth))
    nml.close()
    print(f"\nperformance estimation without labels, {reps} repetitions a scenario, seed {a.seed}; "
          f"NannyML {nml.version if nml.proc else 'not run: ' + nml.why}")
    print(f"{'scenario':<14}{'metric':<10}{'tool':<9}{'realized (median)':>18}{'|est - real| median':>21}{'relative':>10}"
          f"{'in band':>9}{'alerted':>9}{'band width':>12}{'s/call':>8}")
    summary = []
    for s in SCENARIOS:
        for m in METRICS[s]:
            for tool in ('ours', 'nannyml'):
                rows = res[(s, tool)]
                if not rows: continue
                real = [t[m] for _, _, t in rows]; est = [e[m] for e, _, _ in rows]
                err = [abs(e['value'] - x) for e, x in zip(est, real)]
                rel = statistics.median(er/x for er, x in zip(err, real))
                cover = sum(e['lower'] <= x <= e['upper'] for e, x in zip(est, real))/len(rows)
                alert = sum(e['alert'] for e in est)/len(rows)
                width = statistics.median(e['upper'] - e['lower'] for e in est)
                secs = statistics.median(sec for _, sec, _ in rows)
                print(f"{s:<14}{m:<10}{tool:<9}{statistics.median(real):>18.4f}{statistics.median(err):>21.4f}{rel:>10.1%}"
                      f"{cover:>9.2f}{alert:>9.2f}{width:>12.4f}{secs:>8.3f}")
                if tool == 'ours' and m in ('accuracy', 'mae'):
                    ok = (statistics.median(err) <= 0.02 if m == 'accuracy' else rel <= 0.02) and cover >= 0.9
                    summary.append(f"  {'met' if ok else 'MISSED':<7} {s} {m}: median error {statistics.median(err):.4f} "
                                   f"({rel:.1%}), realized in band {cover:.2f} (targets: <= 0.02 {'abs' if m == 'accuracy' else 'relative'}, >= 0.90)")
    for s in SCENARIOS:
        o, n = res[(s, 'ours')], res[(s, 'nannyml')]
        if o and n:
            ratio = statistics.median(a_[1]/b_[1] for a_, b_ in zip(o, n))
            print(f"  {s}: ours / NannyML time per call, median of the alternating pairs: {ratio:.2f}x")
    print("\nsummary"); print('\n'.join(summary))
    import numpy, pandas, sklearn
    print(f"\nnumpy {numpy.__version__}, pandas {pandas.__version__}, scikit-learn {sklearn.__version__}; whole run {time.perf_counter() - t0:.0f} s; "
          f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
