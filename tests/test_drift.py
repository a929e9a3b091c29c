"""Profiles and drift end to end: files profiled in chunks, shards merged, profiles stored with runs, the `mlops-nb drift`
and `profile` commands as a CI job calls them, `%mlops drift` in a real IPython shell, and bad input."""
import json, math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlops_nb as mn
from mlops_nb.tracking import runs as tracking
from mlops_nb.core.config import resolve_settings
from mlops_nb.monitoring.drift import DRIFT_EXIT, drift
from mlops_nb.monitoring.profiles import load_profile, merge_profiles, profile, read_profile, save_profile
from mlops_nb.store.client import open_client
from conftest import mlops_nb_cli
from mlops_nb.core.names import meta_of


def frame(n, seed=0, shift=0.0, missing=0.0, cats=('a', 'b', 'c', 'd')):
    "A mixed frame: numeric (normal, skewed, integer), text, boolean and timestamp columns."
    g = np.random.default_rng(seed)
    x = g.normal(shift, 1, n); x[g.random(n) < missing] = np.nan
    return pd.DataFrame(dict(x=x, amount=g.lognormal(3, 0.5, n), visits=g.poisson(3, n),
                             plan=g.choice(list(cats), n), active=g.random(n) < 0.3,
                             seen=pd.Timestamp('2026-01-01') + pd.to_timedelta(g.integers(0, 10**6, n), unit='s')))


@pytest.fixture
def fresh_tracker():
    yield
    if tracking._State.runs: tracking._end_all('FINISHED')
    if tracking._State.tracker: tracking._State.tracker.close(); tracking._State.tracker = None


def test_a_file_profiled_in_chunks_equals_the_frame_profiled_at_once(tmp_path):
    df = frame(30_000, seed=1)
    df.to_parquet(tmp_path/'d.parquet'); df.to_csv(tmp_path/'d.csv', index=False)
    whole = profile(df)
    for path in (tmp_path/'d.parquet', tmp_path/'d.csv'):
        p = profile(path, chunk_rows=4096)
        assert p.rows == 30_000 and p.kinds == whole.kinds, (path, p.kinds)
        for c in ('x', 'amount', 'visits'):
            assert p[c].moments.n == whole[c].moments.n
            assert math.isclose(p[c].moments.mean, whole[c].moments.mean, rel_tol=1e-9)
            assert math.isclose(p[c].moments.m4, whole[c].moments.m4, rel_tol=1e-7)
            if c == 'visits': continue  # integers: ranks of tied values are not checked this way
            ranks = [np.mean(df[c] <= q) for q in p[c].quantiles([0.1, 0.5, 0.9])]
            assert np.allclose(ranks, [0.1, 0.5, 0.9], atol=p[c].rank_error + 1e-3), (c, ranks)
        assert p['plan'].categories() == whole['plan'].categories()


def test_profiles_of_shards_merge_to_the_profile_of_the_whole_and_stay_small(tmp_path):
    g = np.random.default_rng(0)
    df = pd.DataFrame({f'n{i}': g.normal(size=200_000) for i in range(20)} | {f'c{i}': g.choice([f'v{j}' for j in range(30)], 200_000) for i in range(5)})
    files = []
    for k, part in enumerate(np.array_split(np.arange(len(df)), 4)):
        files.append(save_profile(profile(df.iloc[part]), tmp_path/f'shard{k}.json'))
    merged = merge_profiles(*[read_profile(f) for f in files])
    whole = profile(df)
    assert merged.rows == whole.rows == 200_000
    for c in ('n0', 'n19'):
        assert math.isclose(merged[c].moments.var, df[c].var(), rel_tol=1e-9)
    assert merged['c0'].categories() == whole['c0'].categories() == (df.c0.value_counts().to_dict(), 0, True)
    assert save_profile(merged, tmp_path/'m.json').stat().st_size < 1_000_000  # 25 columns in well under 1 MB
    assert drift(merged, whole, log=False).verdict == 'stable'


@pytest.mark.integration
def test_track_data_stores_a_profile_that_drift_reads_back_by_run_id(project, fresh_tracker):
    train = frame(5000, seed=2)
    with mn.track('train', system_metrics=None) as run:
        rec = mn.track_data(train, name='train')
    assert rec['profile'].rows == 5000 and mn.sync(60)
    c = open_client(resolve_settings())
    tags = c.get_run(run.run_id).data.tags
    assert meta_of(tags)['data.train.profile'] == 'data/train.profile.json'
    back = load_profile(run.run_id)
    assert back.kinds == rec['profile'].kinds and back['x'].moments == rec['profile']['x'].moments
    rep = drift(run.run_id, frame(5000, seed=3, shift=0.3), log=False)
    assert rep.drifted == ['x']
    with pytest.raises(mn.MlopsNbError, match="no data profile named 'serving'"):
        load_profile(run.run_id, 'serving')


@pytest.mark.integration
def test_a_report_is_logged_to_the_active_run(project, fresh_tracker):
    with mn.track('monitor', system_metrics=None) as run:
        rep = mn.drift(frame(3000), frame(3000, seed=4, missing=0.1), label='visits')
    assert mn.sync(60)
    c = open_client(resolve_settings()); r = c.get_run(run.run_id)
    assert r.data.tags['mlops_nb.drift.verdict'] == 'drift' == rep.verdict
    assert r.data.metrics['drift/columns_drifted'] == 1 and r.data.metrics['drift/features_drifted'] == 1
    assert r.data.metrics['drift/score/x'] > 10 > r.data.metrics['drift/score/amount']
    assert {a.path for a in c.list_artifacts(run.run_id, 'drift')} == {'drift/drift.json', 'drift/drift.html', 'drift/current.profile.json'}


def test_bad_and_broken_data_get_verdicts_that_say_why_not_crashes():
    ref = frame(4000, seed=5)
    cur = frame(4000, seed=6)
    cur['x'] = np.nan                                            # a feature that stopped arriving
    cur['amount'] = cur['amount'].astype(str).where(np.random.default_rng(0).random(4000) > 0.1, 'N/A')  # text garbage in a number
    cur['visits'] = cur['visits'].astype(str)                    # numbers arriving as text, all parseable
    cur = cur.drop(columns=['active']).assign(new_col=1.0)
    rep = drift(ref, cur, log=False)
    assert rep['x'].status == 'drift' and any(t.test == 'missing' and t.effect == 1.0 for t in rep['x'].tests)
    assert 'too few values' in rep['x'].reason
    assert rep['amount'].status == 'drift' and rep['amount'].main.test == 'invalid'
    assert rep['visits'].status == 'stable'                     # profiled like the reference: still numbers
    assert (rep['active'].status, rep['new_col'].status) == ('removed', 'added')
    assert rep.verdict == 'drift' and {c.column for c in rep.schema_changes} == {'active', 'new_col'}
    assert rep['seen'].status == 'stable' and {t.test for t in rep['seen'].tests} == {'missing', 'invalid'}  # time moves on
    with pytest.raises(mn.MlopsNbError, match='reference data is empty'): drift(ref.iloc[:0], cur, log=False)
    with pytest.raises(mn.MlopsNbError, match=r"Unknown column\(s\) \['nope'\]"): drift(ref, cur, columns=['nope'], log=False)


def test_calibrated_at_no_shift_and_sensitive_to_real_ones():
    "A quick version of benchmarks/bench_drift_calibration.py: the full figures are measured there."
    gate = [drift(frame(10_000, seed=2*i), frame(10_000, seed=2*i + 1), log=False).verdict for i in range(12)]
    assert gate.count('drift') <= 1, gate
    assert drift(frame(10_000, seed=1), frame(10_000, seed=2, shift=0.1), log=False).drifted == ['x']
    assert drift(frame(10_000, seed=1), frame(10_000, seed=2, missing=0.05), log=False).drifted == ['x']
    new_plan = drift(frame(10_000, seed=1), frame(10_000, seed=2, cats=('a', 'b', 'c', 'd', 'e')), log=False)
    assert new_plan.drifted == ['plan'] and {t.test for t in new_plan['plan'].tests if t.significant() and t.material} >= {'unseen', 'chi2'}


def _write_pair(d):
    frame(20_000, seed=7).to_parquet(d/'ref.parquet')
    frame(20_000, seed=8, shift=0.2).to_csv(d/'cur.csv', index=False)
    frame(20_000, seed=9).to_csv(d/'same.csv', index=False)


@pytest.mark.integration
def test_cli_drift_fails_ci_on_drift_and_writes_reports(project):
    _write_pair(project)
    r = mlops_nb_cli('drift', 'ref.parquet', 'cur.csv', '--html', 'drift.html', '--save-profile', 'cur.json', cwd=project)
    assert r.returncode == DRIFT_EXIT == 13, r.stderr
    assert r.stdout.splitlines()[-2].startswith('DRIFT: 1 of 6 columns drift (x)') and 'x        drift' in r.stdout
    assert (project/'drift.html').read_text().count("data-figure='chart") == 2 and read_profile(project/'cur.json').rows == 20_000  # overview, x
    r = mlops_nb_cli('drift', 'ref.parquet', 'same.csv', cwd=project)
    assert r.returncode == 0 and 'STABLE' in r.stdout.splitlines()[-1], r.stdout
    r = mlops_nb_cli('drift', 'ref.parquet', 'cur.csv', '--fail-on', 'never', '--json', cwd=project)
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out['verdict'] == 'drift' and out['drifted'] == ['x']
    assert {t['test'] for t in next(c for c in out['columns'] if c['column'] == 'x')['tests']} == {'mean', 'variance', 'ks', 'missing', 'invalid'}


@pytest.mark.integration
def test_cli_profile_then_drift_against_the_saved_profile(project):
    _write_pair(project)
    r = mlops_nb_cli('profile', 'ref.parquet', '-o', 'ref.json', cwd=project, check=True)
    assert 'Profiled 20,000 rows x 6 columns' in r.stdout
    r = mlops_nb_cli('drift', 'ref.json', 'cur.csv', '-c', 'x', '-c', 'plan', cwd=project)
    assert r.returncode == 13 and 'DRIFT: 1 of 2 columns drift (x)' in r.stdout, r.stdout + r.stderr


@pytest.mark.integration
def test_cli_errors_name_the_bad_input_and_the_fix(project):
    _write_pair(project)
    (project/'broken.json').write_text('{"format": "mlops_nb.profile", "version": 1, "rows": 1, "columns": [{"name": "x", "kind": "numeric"}]}')
    r = mlops_nb_cli('drift', 'broken.json', 'cur.csv', cwd=project)
    assert r.returncode == 12 and "'broken.json'" in r.stderr.replace(str(project) + '/', '') and 'is corrupt' in r.stderr and 'Fix:' in r.stderr
    (project/'notjson.json').write_text('hello')
    r = mlops_nb_cli('drift', 'notjson.json', 'cur.csv', cwd=project)
    assert r.returncode == 12 and 'is not a profile' in r.stderr
    r = mlops_nb_cli('drift', 'ref.parquet', 'nope.csv', cwd=project)
    assert r.returncode == 12 and "'nope.csv' is neither a file nor a run id" in r.stderr
    (project/'pyproject.toml').write_text('[project]\nname = "demo-project"\n[tool.mlops_nb.drift]\nalpah = 0.01\n')
    r = mlops_nb_cli('drift', 'ref.parquet', 'cur.csv', cwd=project)
    assert r.returncode == 3 and 'Unknown drift setting `alpah`' in r.stderr and 'Did you mean `alpha`?' in r.stderr


@pytest.mark.integration
def test_cli_reads_a_whylogs_profile_as_reference(project):
    pytest.importorskip('whylogs')
    from mlops_nb.monitoring.whylogs import write_whylogs
    _write_pair(project)
    write_whylogs(pd.read_parquet(project/'ref.parquet'), project/'ref.bin')
    r = mlops_nb_cli('drift', 'ref.bin', 'same.csv', '--fail-on', 'never', '--json', cwd=project)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out['verdict'] == 'stable' and out['reference_rows'] == 20_000, out['summary']
    r = mlops_nb_cli('drift', 'ref.bin', 'cur.csv', '--json', cwd=project)
    assert r.returncode == 13 and json.loads(r.stdout)['drifted'] == ['x']


def test_drift_magic_shows_the_widget_and_rescoring_changes_the_verdict(project):
    from IPython.core.interactiveshell import InteractiveShell
    from mlops_nb.monitoring.drift_widget import DriftWidget
    ip = InteractiveShell.instance()
    ip.run_line_magic('load_ext', 'mlops_nb')
    try:
        ip.user_ns.update(ref=frame(5000, seed=10), cur=frame(5000, seed=11, shift=0.04))
        shown = ip.run_line_magic('mlops', 'drift ref cur')  # a shell with no front end: the report, not a widget's repr
        assert not isinstance(shown, DriftWidget) and shown.drifted == ['x']
        w = DriftWidget(ip.user_ns['ref'], ip.user_ns['cur'])  # what a Jupyter kernel shows for the same line
        assert w.report.drifted == ['x'] and w.column.value == 'x'
        w.alpha.value = 1e-6                                    # the slider's strictest: stricter than the evidence
        assert w.report.verdict != 'drift' and w.header.value.count('STABLE') + w.header.value.count('MINOR') == 1
        w.alpha.value = 0.05; w.tests.value = 'chi2'             # categories only: x is not judged
        assert w.report.drifted == []
        rep = ip.run_line_magic('mlops', 'drift ref cur --static --alpha 0.01')
        assert rep.config.alpha == 0.01 and rep.drifted == ['x']
        from IPython.core.error import UsageError
        with pytest.raises(UsageError, match="neither a file nor a run id"): ip.run_line_magic('mlops', 'drift ref missing_var')
    finally:
        ip.run_line_magic('unload_ext', 'mlops_nb')


@pytest.mark.integration
def test_a_value_too_large_for_the_moments_is_invalid_and_an_old_poisoned_profile_is_refused(project):
    "issue 16: `1e308` in a served request once made the profile's moments Infinity, and `mlops-nb drift` crashed (exit 70)."
    cur = frame(2000, seed=12); cur.loc[:9, 'x'] = 1e308
    p = profile(cur)
    assert (p['x'].inf, p['x'].moments.n) == (10, 1990) and math.isfinite(p['x'].moments.m4)
    assert drift(frame(2000, seed=13), p, log=False)['x'].main.test == 'invalid'
    serving = project/'.mlops'/'serving'/'v1'/'inputs'; serving.mkdir(parents=True)
    d = json.loads(save_profile(profile(frame(2000, seed=14)), serving/'a.profile.json').read_text())
    col = next(c for c in d['columns'] if c['name'] == 'amount'); col['moments'][2] = float('inf')  # what an older mlops_nb wrote
    (serving/'a.profile.json').write_text(json.dumps(d))
    save_profile(profile(frame(2000, seed=15)), tmp := project/'ref.json')
    r = mlops_nb_cli('drift', str(tmp), str(project/'.mlops'/'serving'), cwd=project)
    assert r.returncode == 12 and "Column 'amount'" in r.stderr and 'non-finite moments' in r.stderr and 'Fix:' in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr


def test_rare_categories_new_by_sampling_alone_are_not_drift_but_a_real_new_one_is():
    "500 Zipf categories: the current sample always holds some the reference lacks; their share is what sampling predicts."
    w = 1/np.arange(1, 501); names = np.array([f'c{i}' for i in range(500)], dtype=object)
    zipf = lambda seed: pd.DataFrame(dict(c=names[np.random.default_rng(seed).choice(500, 10_000, p=w/w.sum())]))
    statuses = [drift(zipf(2*i), zipf(2*i + 1), log=False)['c'].status for i in range(10)]
    assert statuses.count('stable') >= 9, statuses
    cur = zipf(99); cur.loc[:299, 'c'] = 'brand-new'          # 3 % of rows in a category never seen before
    rep = drift(zipf(98), cur, log=False)
    assert rep['c'].status == 'drift' and any(t.test == 'unseen' and t.material for t in rep['c'].tests if t.significant())


def test_object_strings_are_profiled_like_arrow_strings():
    "pandas 2 holds text as `object`: the Arrow path must count the same values, missing ones and type mismatches."
    s = frame(5000, seed=16)['plan']
    obj = s.astype(object).where(np.random.default_rng(1).random(5000) > 0.1, None)
    a, b = profile(obj.to_frame())['plan'], profile(obj.astype('str').where(obj.notna()).to_frame())['plan']
    assert a.categories() == b.categories() and a.null == b.null == int(obj.isna().sum())
    mixed = obj.copy(); mixed.iloc[:7] = 3                     # numbers among the text: counted as mismatches
    assert profile(mixed.to_frame(), like=profile(obj.to_frame()))['plan'].mismatch == 7


@pytest.mark.integration
def test_the_report_page_carries_plotly_once_and_draws_every_chart_offline_in_chromium(tmp_path):
    "The page's charts render in a real browser with every network request refused; plotly.js is in it once, compressed."
    chromium = Path('/usr/bin/chromium')
    if not chromium.exists(): pytest.skip(f"no browser: {chromium} is missing (apt-get install chromium)")
    sync_playwright = pytest.importorskip('playwright.sync_api', reason="pip install playwright (in the dev extra)").sync_playwright
    ref, cur = frame(5000), frame(5000, seed=1, shift=0.3, missing=0.05, cats=('a', 'b', 'c', 'd', 'e'))
    rep = drift(ref, cur, log=False)
    moved = [c.column for c in rep.columns if c.status in ('drift', 'minor', 'retyped')]
    assert moved[:1] == ['x'] and 'plan' in moved, moved
    page = tmp_path/'drift.html'; rep.to_html(page)
    text = page.read_text()
    assert text.count("id='plotly-js-gzip'") == 1 and text.count('plotly.min.js') == 0 and 1.5e6 < page.stat().st_size < 2.1e6
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=['--no-sandbox'])
        try:
            ctx = browser.new_context(); requests = []
            ctx.route('**/*', lambda route: (requests.append(route.request.url), route.continue_() if route.request.url.startswith('file:') else route.abort()))
            tab = ctx.new_page(); errors = []
            tab.on('pageerror', lambda e: errors.append(str(e)))
            tab.goto(page.as_uri())
            tab.wait_for_function(f"document.querySelectorAll('div[data-figure] .main-svg').length >= {2*(1 + len(moved))}", timeout=60_000)
            titles = tab.eval_on_selector_all('.gtitle', 'els => els.map(e => e.textContent)')
        finally: browser.close()
    assert not errors and [u for u in requests if not u.startswith('file:')] == [], (errors, requests)
    assert titles[0].startswith(f"DRIFT: {len(rep.drifted)} of 6 columns drift"), titles
    assert any(t.startswith('x: drift') and 'missing values changed: missing 0% -> 5.0%' in t for t in titles), titles
    assert any(t.startswith('plan: drift') and "new category 'e'" in t for t in titles), titles
