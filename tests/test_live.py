"""The live run view (mlops_nb/tracking/live.py, issue 17): its text in a terminal IPython, and the widget in a real JupyterLab in
headless Chromium, updating under `%mlops track` while a later cell logs, matching the store afterwards, and showing
a quota stop and the run's end. The browser tests reuse tests/test_browser.py's JupyterLab and Chromium (a JupyterLab
of this module's own), in a project folder of their own inside it (`live/`, with its own budgets)."""
import json, os, subprocess, sys, time
from pathlib import Path

import pytest

from conftest import REPO
from test_browser import lab, browser, _nb, _open, _run_all, _outputs, SHOTS  # noqa: F401 -- fixtures and helpers


# -- a terminal IPython: the text fallback ------------------------------------------------------------------------

@pytest.mark.integration
def test_mlops_live_in_a_terminal_prints_the_run_and_imports_no_widget_library(project):
    "`%mlops track` in a plain IPython shows nothing more and imports no anywidget; `%mlops live` prints the summary, after `stop` too."
    code = """
import sys
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
ip.run_line_magic('load_ext', 'mlops_nb')
ip.run_line_magic('mlops', 'track --name term --system-metrics 0')
import mlops_nb as mn
for i in range(300): mn.log_metric('loss', 1/(i + 1), step=i)
print('@@widgets', [m for m in ('anywidget', 'ipywidgets') if m in sys.modules])
ip.run_line_magic('mlops', 'live')
ip.run_line_magic('mlops', 'stop')
ip.run_line_magic('mlops', 'live')
"""
    r = subprocess.run([sys.executable, '-c', code], cwd=project, capture_output=True, text=True, timeout=120,
                       env=os.environ | dict(PYTHONPATH=str(REPO)))
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert "@@widgets []" in out, out
    first, second = out.split('@@widgets []')[1].split('Stopped run')
    assert "run       term  RUNNING" in first and "experiment 'demo-project'" in first, first
    assert "metric    loss = 0.00333333  (step 299, 300 points)" in first, first
    assert "store     " in first and "backlog" in first, first
    assert "run       term  FINISHED" in second and "ended     FINISHED" in second, second
    assert "metric    loss = 0.00333333  (step 299, 300 points)" in second, second


@pytest.mark.integration
def test_live_view_needs_no_store(project):
    "With no sync process and a store nobody can reach, the view still shows the run from the journal alone (widget model and text)."
    (project/'pyproject.toml').write_text('[project]\nname = "offline"\n[tool.mlops_nb]\ntracking_uri = "http://127.0.0.1:9"\n')
    code = """
import mlops_nb as mn
run = mn.track(name='offline', system_metrics=None)
for i in range(5000): mn.log_metric('loss', 1/(i + 1), step=i)
v = mn.live(run, max_points=100, settle=0)  # no store will catch up: do not wait for it
w = v.widget
mn.stop(); v._post(); v._thread.join(60)
print('@@', w.run['status'], w.metrics['loss']['n'], w.metrics['loss']['last'], len(w.series['loss']), w.run['run_id'], w.health['store_ok'])
print(v.summary())
"""
    r = subprocess.run([sys.executable, '-c', code], cwd=project, capture_output=True, text=True, timeout=120,
                       env=os.environ | dict(PYTHONPATH=str(REPO), MLOPS_NB_SYNC_DELAY='1'))  # as under `mlops-nb run`: no sync process
    assert r.returncode == 0, r.stderr[-3000:]
    status, n, last, points, run_id, store_ok = r.stdout.split('@@ ')[1].splitlines()[0].split()
    assert (status, n, last, run_id, store_ok) == ('FINISHED', '5000', '0.0002', 'None', 'None') and int(points) <= 100, r.stdout
    assert "metric    loss = 0.0002  (step 4999, 5000 points)" in r.stdout and "id - (not in the store yet)" in r.stdout, r.stdout


def test_live_without_a_run_says_how_to_start_one(project):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.core.error import UsageError
    from mlops_nb.tracking import live
    from mlops_nb.tracking import runs as tracking
    live._Last.run = None; tracking._State.runs.clear()
    ip = InteractiveShell.instance(); ip.run_line_magic('load_ext', 'mlops_nb')
    with pytest.raises(UsageError, match=r"(?s)No run to show live.*%mlops track"): ip.run_line_magic('mlops', 'live')


# -- a real JupyterLab --------------------------------------------------------------------------------------------

LOOP = ("import mlops_nb as mn, time\nfrom pathlib import Path\ni = 0\n"
        "while not Path('stop-logging').exists():  # the test makes it once it has seen the view move\n"
        "    mn.log_metric('loss', 1/(i + 1), step=i); mn.log_metric('acc', 1 - 1/(i + 2), step=i); i += 1\n"
        "    time.sleep(0.002)  # a training step's pace\n"
        "print(f'logged {i} steps')")

QUOTA_LOOP = ("import mlops_nb as mn, time\ni = 0\nwhile True:  # until the quota stops the run (6 s of wall time)\n"
              "    mn.log_metric('loss', 1/(i + 1), step=i); i += 1; time.sleep(0.005)")


def _project(lab):
    "A project of its own in the JupyterLab's folder: budgets for the quota notebook, a 'running UI' for links."
    p = lab['root']/'live'
    if not p.exists():
        p.mkdir()
        (p/'pyproject.toml').write_text('[project]\nname = "live-demo"\n[tool.mlops_nb.quota.pipelines.quota_stop]\nrun_minutes = 0.1\n')
        (p/'.mlops').mkdir()  # `running_ui` believes a UI runs while its pid lives: this test's own
        (p/'.mlops'/'ui.json').write_text(json.dumps(dict(url='http://127.0.0.1:5999', pid=os.getpid(), port=5999)))
    return p


def _settings(lab):
    from mlops_nb.core.config import resolve_settings
    return resolve_settings(project_dir=lab['root']/'live', env={}, cache_dir=str(lab['base']/'cache'))


def _view(i):
    "JavaScript for the live view under code cell `i`."
    return f"document.querySelectorAll('.jp-Notebook .jp-CodeCell')[{i}]?.querySelector('.mlops-live')"


def _count_js(i, key):
    return f"(() => {{ const e = {_view(i)}?.querySelector('.ml-chart[data-metric=\"{key}\"] .ml-count'); return e ? +e.dataset.count : -1; }})()"


def _running_js(i):
    return f"document.querySelectorAll('.jp-Notebook .jp-CodeCell')[{i}].querySelector('.jp-InputPrompt').innerText.includes('*')"


def _wait_js(page, expr, timeout=120, what=''):
    "Wait for the JavaScript `expr` to be truthy (playwright polls it on animation frames)."
    try: return page.wait_for_function(f"() => {expr}", timeout=timeout*1000).json_value()
    except Exception:
        page.screenshot(path=str(SHOTS/'_failed_live.png'), full_page=True)
        cells = page.locator('.jp-Notebook .jp-CodeCell')
        pytest.fail(f"never saw {what or expr}; the cells show:\n" + '\n---\n'.join(_outputs(page, j)[-1500:] for j in range(cells.count())))


@pytest.mark.browser
@pytest.mark.integration
def test_live_view_updates_under_track_while_a_later_cell_logs_and_matches_the_store(lab, browser):
    root = _project(lab)
    _nb(root/'watch.ipynb', '%load_ext mlops_nb', '%mlops track --name live-watch --system-metrics 1', LOOP, '%mlops stop')
    page = _open(lab, browser, 'live/watch.ipynb')
    _run_all(page)
    _wait_js(page, f"{_view(1)} !== null && {_view(1)} !== undefined", what="the live view under %mlops track")
    # the view moves while cell 2 is still running: a count, then a larger one, both seen with the cell busy
    _wait_js(page, f"{_count_js(1, 'loss')} >= 50 && {_running_js(2)}", what="50 points of loss while the loop runs")
    seen = page.evaluate(f"() => {_count_js(1, 'loss')}")
    _wait_js(page, f"{_count_js(1, 'loss')} >= {seen + 200} && {_running_js(2)}", what=f"more than {seen + 200} points while the loop runs")
    assert page.evaluate(f"() => {_view(1)}.dataset.status") == 'RUNNING'
    page.locator('.jp-Notebook .jp-CodeCell').nth(1).locator('.mlops-live').screenshot(path=str(SHOTS/'live_view.png'))
    (root/'stop-logging').touch()
    _wait_js(page, f"{_view(1)}.dataset.status === 'FINISHED' && {_view(1)}.querySelector('[data-field=fate]') !== null",
             what="the run's end in the view")
    logged = int(_outputs(page, 2).split('logged ')[1].split()[0])
    _wait_js(page, f"{_count_js(1, 'loss')} === {logged}", what=f"all {logged} points of loss counted")
    view = page.locator('.jp-Notebook .jp-CodeCell').nth(1).locator('.mlops-live')
    shown = {k: float(view.locator(f'.ml-chart[data-metric="{k}"] .ml-last').get_attribute('data-value')) for k in ('loss', 'acc')}
    assert view.locator('[data-field=fate]').inner_text() == 'Run finished'
    assert view.locator('.ml-chart').count() == 2                                   # loss and acc; system/* are pickable, not drawn
    polyline = view.locator('.ml-chart[data-metric="loss"] polyline').first.get_attribute('points')
    assert 2 <= len(polyline.split()) <= 500, len(polyline.split())                 # downsampled, whatever was logged
    _wait_js(page, f"{_view(1)}.dataset.runId !== '' && {_view(1)}.querySelector('[data-field=health]').innerText.startsWith('store ok · backlog 0 B')",
             what="the store caught up: the run's id, store ok, no backlog")
    run_id = view.get_attribute('data-run-id')
    href = view.locator('a.ml-link').get_attribute('href')
    # the controls: a resource metric picked is sent by the kernel (it sends only the curves shown), acc unpicked, smoothing, log scale
    view.locator('.ml-res-group summary').click()
    view.locator('input[data-metric="system/process_memory_rss_megabytes"]').check()
    view.locator('input[data-metric="acc"]').uncheck()
    _wait_js(page, f"[...{_view(1)}.querySelectorAll('.ml-chart')].map(e => e.dataset.metric).join() === 'loss,system/process_memory_rss_megabytes'"
             f" && {_view(1)}.querySelector('.ml-chart[data-metric=\"system/process_memory_rss_megabytes\"] polyline') !== null", what="the picked curves")
    view.locator('input.ml-smoothing').fill('0.9')
    _wait_js(page, f"{_view(1)}.querySelector('.ml-chart[data-metric=loss] polyline.ml-smooth') !== null", what="the smoothed curve")
    linear = view.locator('.ml-chart[data-metric="loss"] polyline.ml-raw').get_attribute('points')
    view.locator('input.ml-log').check()
    _wait_js(page, f"{_view(1)}.querySelector('.ml-chart[data-metric=loss] polyline.ml-raw').getAttribute('points') !== {json.dumps(linear)}",
             what="the curve redrawn on a log scale")
    page.close()
    import mlops_nb as mn
    from mlops_nb.tracking.sync import replay_journals
    s = _settings(lab); replay_journals(s)
    run = mn.load_run(run_id, s)
    assert run.status == 'FINISHED' and run.tags['mlflow.runName'] == 'live-watch'
    assert (run.metrics['loss'], run.metrics['acc']) == (shown['loss'], shown['acc']) == (1/logged, 1 - 1/(logged + 1))
    assert len(run.metric_history('loss')) == logged
    assert any(k.startswith('system/') for k in run.metrics)                          # sampled each second, shown as resources
    from mlops_nb.store.client import open_client
    eid = open_client(s).get_run(run_id).info.experiment_id
    assert href == f"http://127.0.0.1:5999/#/experiments/{eid}/runs/{run_id}"


@pytest.mark.browser
@pytest.mark.integration
def test_live_view_shows_the_quota_share_and_the_quota_stop(lab, browser):
    root = _project(lab)
    _nb(root/'quota_stop.ipynb', '%load_ext mlops_nb', '%mlops track --name live-quota --system-metrics 0', QUOTA_LOOP)
    page = _open(lab, browser, 'live/quota_stop.ipynb')
    _run_all(page)
    _wait_js(page, f"{_view(1)}?.querySelector('[data-field=quota]') && +{_view(1)}.querySelector('[data-field=quota]').dataset.share > 0.2"
             f" && {_view(1)}.dataset.status === 'RUNNING'", what="the quota's share used, while the run goes on")
    assert 'of run_minutes for one quota_stop run' in page.locator('.jp-Notebook .jp-CodeCell').nth(1).locator('[data-field=quota]').inner_text()
    _wait_js(page, f"{_view(1)}.dataset.status === 'FAILED' && {_view(1)}.querySelector('[data-field=fate]')?.dataset.kind === 'quota'",
             what="the quota stop in the view")
    view = page.locator('.jp-Notebook .jp-CodeCell').nth(1).locator('.mlops-live')
    fate = view.locator('[data-field=fate]').inner_text()
    assert fate.startswith('Stopped by quota: ') and 'reached the limit' in fate and 'run_minutes' in fate, fate
    assert view.locator('[data-field=state]').inner_text() == 'STOPPED BY QUOTA'
    assert float(view.locator('[data-field=quota]').get_attribute('data-share')) >= 1.0
    _wait_js(page, "document.querySelectorAll('.jp-Notebook .jp-CodeCell')[2].querySelector('.jp-OutputArea').innerText.includes('KeyboardInterrupt')",
             what="the running cell interrupted")
    view.screenshot(path=str(SHOTS/'live_view_quota_stop.png'))
    page.close()
