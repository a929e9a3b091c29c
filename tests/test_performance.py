"""Performance estimation on synthetic covariate shift where the truth is known: CBPE for a calibrated and a miscalibrated
classifier, DLE for a regression with noise that grows away from the centre; estimates logged to a real run."""
import numpy as np
import pandas as pd
import pytest

import mlops_nb as mn
from mlops_nb.tracking import runs as tracking
from mlops_nb.core.config import resolve_settings
from mlops_nb.monitoring.performance import PerformanceError, estimate_performance
from mlops_nb.store.client import open_client

pytest.importorskip('sklearn')
sig = lambda z: 1/(1 + np.exp(-z))


def classified(n, sd, seed, overconfident=False):
    "x1 ~ N(0, sd): at sd 1 the true model (logit 5 x1) is right ~90 % of the time, at sd 0.5 ~81 %."
    g = np.random.default_rng(seed); x1 = g.normal(0, sd, n)
    p = sig(5*x1); y = (g.random(n) < p).astype(int)
    score = sig(10*x1) if overconfident else p  # the overconfident model ranks the same, its probabilities are too sure
    return pd.DataFrame(dict(x1=x1, x2=g.normal(size=n), score=score, pred=(score >= 0.5).astype(int), label=y))


def regressed(n, sd, seed):
    g = np.random.default_rng(seed); x1, x2 = g.normal(0, sd, n), g.normal(size=n)
    return pd.DataFrame(dict(x1=x1, x2=x2, pred=2*x1 + x2, y=2*x1 + x2 + g.normal(0, 0.3 + 0.7*np.abs(x1), n)))


# The behaviour on a few fixed draws (seconds); the coverage over many repetitions is the benchmark's figure:
# `python benchmarks/bench_drift_performance.py` (benchmarks/README.md).
@pytest.mark.parametrize('overconfident', [False, True])
def test_cbpe_accuracy_under_covariate_shift_is_within_two_points_and_covered_by_its_band(overconfident):
    errors, realized, covered = [], [], []
    ref = classified(10_000, 1.0, 0, overconfident)
    for r in range(10):
        rep = estimate_performance(ref, classified(5000, 0.5, 100 + r, overconfident), prediction='pred', proba='score', seed=r, log=False)
        a = rep['accuracy']; errors.append(abs(a.value - a.realized)); realized.append(a.realized); covered.append(a.lower <= a.realized <= a.upper)
        assert a.reference > 0.88 and a.alert and ('recalibrated' in ' '.join(rep.notes)) == overconfident
        assert 0.01 < a.upper - a.lower < 0.05, a  # a band of the sampling noise's width (sd ~0.006 at 5,000 rows)
    assert 0.78 < np.median(realized) < 0.83                       # the shift really costs ~9 points
    assert np.median(errors) <= 0.02 and sum(covered) >= 8, (errors, covered)  # a 95 % band: 8 of 10 at least (P = 0.99)


def test_dle_mae_under_covariate_shift_is_close_and_covered():
    ref = regressed(20_000, 1.0, 1)  # the shift stays within the reference's range: trees do not extrapolate (DLE's assumption)
    cur = regressed(5000, 1.3, 200)
    m = estimate_performance(ref, cur, prediction='pred', label='y', log=False)['mae']
    assert abs(m.value - m.realized)/m.realized <= 0.02 and m.lower <= m.realized <= m.upper, m
    assert m.realized > m.ref_upper and m.alert  # MAE grew ~25 %: outside the reference's band
    sampling = np.sqrt(((0.3 + 0.7*np.abs(cur.x1))**2*(1 - 2/np.pi)).sum())/len(cur)  # the realized MAE's own sd: |N(0, s)| has variance s^2 (1 - 2/pi)
    assert 1.1 < (m.upper - m.lower)/(2*1.96*sampling) < 3, (m, sampling)  # wider: the error model's own uncertainty counts too


@pytest.mark.integration  # the run's sync process
def test_estimates_are_logged_as_metrics_of_the_active_run(project):
    try:
        with mn.track('monitor', system_metrics=None) as run:
            rep = mn.estimate_performance(classified(4000, 1.0, 3), classified(2000, 0.5, 4).drop(columns='label'), prediction='pred', proba='score')
        assert mn.sync(60)
    finally:
        if tracking._State.tracker: tracking._State.tracker.close(); tracking._State.tracker = None
    r = open_client(resolve_settings()).get_run(run.run_id)
    assert r.data.metrics['estimated/accuracy'] == pytest.approx(rep['accuracy'].value)
    assert {'estimated/roc_auc_lower', 'estimated/f1_upper'} <= set(r.data.metrics) and not any(k.startswith('realized/') for k in r.data.metrics)
    assert r.data.tags['mlops_nb.performance.alerts'] == 'accuracy,roc_auc,f1'


def test_bad_input_names_the_column_and_the_fix(tmp_path):
    ref = classified(500, 1.0, 5)
    with pytest.raises(PerformanceError, match=r"no probability or prediction column 'proba'"):
        estimate_performance(ref, ref, prediction='pred', proba='proba', log=False)
    with pytest.raises(PerformanceError, match=r"outside \[0, 1\]"):
        estimate_performance(ref, ref.assign(score=ref.score*3), prediction='pred', proba='score', log=False)
    (tmp_path/'serving').mkdir()
    with pytest.raises(PerformanceError, match="profile folder") as e:
        estimate_performance(ref, tmp_path/'serving', prediction='pred', proba='score', log=False)
    assert 'mn.drift' in str(e.value)


@pytest.mark.integration  # the run's sync process
def test_the_widget_reads_estimates_and_realized_values_of_monitored_runs_back_in_order(project):
    "Three monitor runs in a real store: the history has one row per run, oldest first, with the estimate, its band, the reference's band and the realized value where labels came."
    from mlops_nb.monitoring.drift_widget import DriftWidget, performance_figure, performance_history
    ref = classified(4000, 1.0, 3); reps = []
    try:
        for i, sd in enumerate([1.0, 0.7, 0.5]):
            cur = classified(2000, sd, 10 + i)
            with mn.track('monitor', name='monitor', system_metrics=None):
                reps.append(mn.estimate_performance(ref, cur if i < 2 else cur.drop(columns='label'), prediction='pred', proba='score'))
        with mn.track('monitor', name='train', system_metrics=None): mn.log_metric('accuracy', 0.9)  # no estimate: not in the history
        assert mn.sync(60)
    finally:
        if tracking._State.tracker: tracking._State.tracker.close(); tracking._State.tracker = None
    h = performance_history('monitor', settings=resolve_settings())
    assert list(h['name']) == ['monitor']*3 and h['batch'].is_monotonic_increasing
    assert list(h['estimated/accuracy']) == pytest.approx([r['accuracy'].value for r in reps])
    assert list(h['reference/accuracy_lower']) == pytest.approx([r['accuracy'].ref_lower for r in reps])
    assert list(h['realized/accuracy'][:2]) == pytest.approx([r['accuracy'].realized for r in reps[:2]]) and np.isnan(h['realized/accuracy'][2])
    fig = performance_figure(h)
    est = next(t for t in fig.data if t.name == 'estimated (no labels)')
    assert list(est.y) == pytest.approx([r['accuracy'].value for r in reps])
    assert [c == '#c0392b' for c in est.marker.color] == [r['accuracy'].alert for r in reps] == [False, True, True]  # sd 0.7 costs ~4 points: outside the band
    assert len(performance_history('monitor', name='train', settings=resolve_settings())) == 0
    w = DriftWidget(mn.drift(ref, classified(2000, 0.5, 12), log=False), performance=h)
    assert w.metric.options == ('accuracy', 'roc_auc', 'f1') and w.performance.layout.title.text == "accuracy, estimated without labels: outside the reference's band in 2 of 3 runs"
