"""In a real JupyterLab, in headless Chromium (Debian's, driven by playwright): the magics, the drift widget and the
quota widget as a user sees them. Each scenario saves a screenshot: into a temporary folder, or, to refresh the docs'
pictures, into docs/screenshots/ when asked (`MLOPS_NB_SCREENSHOTS=docs/screenshots pytest -m browser`): a test run
never writes into the checkout.

Needs Debian's `chromium` (/usr/bin/chromium) and the `playwright` package (in the dev extra); `.ci/run` installs
Chromium when it can (root and apt-get). Select these tests with `-m browser`."""
import json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request, uuid
from pathlib import Path

import pytest

from conftest import BIN, REPO
from mlops_nb.core.names import meta_of

pytestmark = [pytest.mark.browser, pytest.mark.integration]
CHROMIUM = Path('/usr/bin/chromium')
SHOTS = Path(os.environ.get('MLOPS_NB_SCREENSHOTS') or __import__('tempfile').mkdtemp(prefix='mlops-nb-shots-'))


def _nb(path, *cells):
    nb = dict(nbformat=4, nbformat_minor=5, metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')),
              cells=[dict(cell_type='code', id=f"c{i}", metadata={}, execution_count=None, outputs=[], source=c) for i, c in enumerate(cells)])
    Path(path).write_text(json.dumps(nb, indent=1))


def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    "A JupyterLab server on 127.0.0.1 with a token, serving a fresh project folder."
    if not CHROMIUM.exists(): pytest.skip(f"no browser: {CHROMIUM} is missing (apt-get install chromium; .ci/run does it as root)")
    pytest.importorskip('playwright.sync_api', reason="pip install playwright (in the dev extra)")
    base = tmp_path_factory.mktemp('lab'); root = base/'proj'
    if os.environ.get('MLOPS_NB_SCREENSHOTS'):  # the docs' pictures show a project as a user has one, not a test's folder
        root = Path(tempfile.gettempdir())/'churn'; shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    # JupyterLab asks whether to fetch its news in a toast that would cover the pictures: answered no, as a user would
    notify = base/'jcfg'/'lab'/'user-settings'/'@jupyterlab'/'apputils-extension'/'notification.jupyterlab-settings'
    notify.parent.mkdir(parents=True); notify.write_text(json.dumps(dict(fetchNews='false', checkForUpdates=False)))
    (root/'pyproject.toml').write_text('[project]\nname = "browser-demo"\n[tool.mlops_nb.quota]\ncpu_hours = 1\n'
                                       '[tool.mlops_nb.quota.pipelines.train]\nruns = 4\nrun_memory_gb = 8\n')
    port, token = _free_port(), uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith(('MLOPS_NB_', 'MLFLOW_', 'JUPYTER'))}
    env |= dict(MLOPS_NB_CACHE_DIR=str(base/'cache'), JUPYTER_CONFIG_DIR=str(base/'jcfg'), JUPYTER_RUNTIME_DIR=str(base/'jrun'),
                JUPYTERLAB_WORKSPACES_DIR=str(base/'ws'), HOME=str(base))
    log = open(base/'lab.log', 'w')
    proc = subprocess.Popen([str(BIN/'jupyter-lab'), '--no-browser', f'--port={port}', '--ServerApp.ip=127.0.0.1',
                             f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={root}', '--LabApp.expose_app_in_browser=True',
                             '--LabApp.news_url=', '--ServerApp.open_browser=False', *(['--allow-root'] if os.geteuid() == 0 else [])], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    up = False
    for _ in range(120):
        try: urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1); up = True; break
        except OSError:
            if proc.poll() is not None: break
            time.sleep(0.5)
    if not up:
        proc.kill(); pytest.fail(f"JupyterLab did not start:\n{(base/'lab.log').read_text()[-3000:]}")
    yield dict(url=url, token=token, root=root, base=base)
    proc.terminate()
    try: proc.wait(20)
    except subprocess.TimeoutExpired: proc.kill()


@pytest.fixture(scope='module')
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                              args=['--no-sandbox', '--disable-background-networking', '--disable-dev-shm-usage', '--disable-gpu'])
        yield b
        b.close()


def _open(lab, browser, name):
    "A page with notebook `name` open and its kernel idle."
    page = browser.new_page(viewport={'width': 1300, 'height': 1100})
    page.goto(f"{lab['url']}/lab/workspaces/{Path(name).stem}/tree/{name}?reset&token={lab['token']}")  # a clean workspace each
    page.wait_for_function("window.jupyterapp && document.querySelector('.jp-Notebook')", timeout=90_000)
    try:  # a fresh JupyterLab asks which kernel to start: the notebook's own, Python 3
        page.locator('.jp-Dialog button.jp-mod-accept').click(timeout=10_000)
    except Exception: pass
    page.wait_for_function("document.querySelector('.jp-Notebook-ExecutionIndicator[data-status=\"idle\"]') && "
                           "!document.querySelector('.jp-Dialog')", timeout=90_000)
    return page


def _run_all(page):
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); return true; }")  # not awaited: cells report below


def _outputs(page, i):
    "The text of the outputs of code cell `i`."
    return page.locator('.jp-Notebook .jp-CodeCell').nth(i).locator('.jp-OutputArea').inner_text()


def _wait_text(page, i, text, timeout=120):
    t = time.time()
    while time.time() - t < timeout:
        out = _outputs(page, i)
        if text in out: return out
        if 'Traceback' in out or 'Error' in out.split('\n')[0]: pytest.fail(f"cell {i} failed:\n{out[-3000:]}")
        time.sleep(0.5)
    page.screenshot(path=str(SHOTS.parent/'_failed.png'), full_page=True)
    pytest.fail(f"cell {i} never showed {text!r}; it shows:\n{_outputs(page, i)[-2000:]}\n(all cells: {[_outputs(page, j)[:200] for j in range(page.locator('.jp-CodeCell').count())]})")


def _wait_for(page, cell, selector, timeout=120_000):
    "Wait for `selector` in `cell`; on a timeout, fail with what the cell shows (and a screenshot in docs/_failed.png)."
    try: cell.locator(selector).first.wait_for(timeout=timeout)
    except Exception:
        page.screenshot(path=str(SHOTS.parent/'_failed.png'), full_page=True)
        pytest.fail(f"never saw {selector!r}; the cell shows:\n{cell.inner_text()[-3000:]}")


def test_magics_track_a_training_cell_in_jupyterlab(lab, browser):
    _nb(lab['root']/'first.ipynb', '%load_ext mlops_nb', '%mlops track --name browser-first --system-metrics 0',
        "from sklearn.datasets import load_breast_cancer\nfrom sklearn.linear_model import LogisticRegression\nimport mlops_nb as mn\n"
        "X, y = load_breast_cancer(return_X_y=True)\nacc = LogisticRegression(max_iter=3000).fit(X, y).score(X, y)\n"
        "mn.log_metric('accuracy', acc)\nprint(f'accuracy {acc:.3f}')",
        '%mlops status', '%mlops stop')
    page = _open(lab, browser, 'first.ipynb')
    _run_all(page)
    assert 'Tracking run' in _wait_text(page, 1, 'Tracking run')
    assert 'accuracy 0.9' in _wait_text(page, 2, 'accuracy')
    status = _wait_text(page, 3, 'experiment')
    assert 'browser-first' in status and 'first.ipynb' in status and 'browser-demo' in status
    _wait_text(page, 4, 'FINISHED')
    page.screenshot(path=str(SHOTS/'magics_in_jupyterlab.png'), full_page=True)
    page.close()
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.store.client import open_client
    from mlops_nb.tracking.sync import replay_journals
    s = resolve_settings(project_dir=lab['root'], env={}, cache_dir=str(lab['base']/'cache'))
    replay_journals(s)
    c = open_client(s)
    (run,) = c.search_runs([c.get_experiment_by_name('browser-demo').experiment_id], "tags.mlflow.runName = 'browser-first'")
    assert run.info.status == 'FINISHED' and run.data.metrics['accuracy'] > 0.9
    assert run.data.tags['mlflow.source.name'] == str(lab['root']/'first.ipynb')  # the path JupyterLab gave the kernel
    assert meta_of(run.data.tags)['notebook_source'] == 'jupyter'


DRIFT_DATA = ("import numpy as np, pandas as pd\ng = np.random.default_rng(1)\n"
              "ref = pd.DataFrame(dict(income=g.normal(50, 10, 3000), age=g.normal(40, 12, 3000), plan=g.choice(['free', 'pro', 'team'], 3000), score=g.random(3000)))\n"
              "g = np.random.default_rng(2)\n"
              "cur = pd.DataFrame(dict(income=g.normal(51.3, 10, 3000), age=g.normal(40, 12, 3000), plan=g.choice(['free', 'pro', 'team'], 3000), score=g.random(3000)))")


def test_drift_widget_lists_the_drifted_feature_first_and_the_slider_changes_the_verdict(lab, browser):
    _nb(lab['root']/'drift.ipynb', '%load_ext mlops_nb', DRIFT_DATA, '%mlops drift ref cur')
    page = _open(lab, browser, 'drift.ipynb')
    _run_all(page)
    cell = page.locator('.jp-Notebook .jp-CodeCell').nth(2)
    _wait_for(page, cell, 'text=DRIFT: 1 of 4 columns drift (income)')
    _wait_for(page, cell, '.js-plotly-plot .bars', 60_000)                            # the bar chart rendered
    options = cell.locator('.widget-dropdown select').nth(1).locator('option').all_inner_texts()
    assert options[0] == 'income', options                                           # most drifted first
    assert cell.locator('.js-plotly-plot').count() == 2                              # bars and income's distributions
    page.screenshot(path=str(SHOTS/'drift_widget.png'), full_page=True)
    handle = cell.locator('.widget-slider .noUi-handle, .widget-slider .ui-slider-handle').first
    handle.focus(); page.keyboard.press('Home')                                      # alpha to its strictest, 1e-6
    _wait_for(page, cell, 'text=/(MINOR|STABLE): 0 of 4 columns drift/', 30_000)
    page.screenshot(path=str(SHOTS/'drift_widget_strict_alpha.png'), full_page=True)
    page.close()


def test_quota_widget_draws_budgets_with_their_labels(lab, browser):
    from mlflow.entities import Metric
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.store.client import ensure_store, open_client
    s = resolve_settings(project_dir=lab['root'], env={}, cache_dir=str(lab['base']/'cache')); ensure_store(s); c = open_client(s)
    exp = c.get_experiment_by_name(s.experiment) or c.get_experiment(c.create_experiment(s.experiment))
    for cpu in (1500, 1400):
        r = c.create_run(exp.experiment_id, tags={'mlops_nb.pipeline': 'train.ipynb'})
        c.log_batch(r.info.run_id, metrics=[Metric('system/run_cpu_seconds', cpu, int(time.time()*1000), 0)]); c.set_terminated(r.info.run_id)
    _nb(lab['root']/'quota.ipynb', '%load_ext mlops_nb', '%mlops quota')
    page = _open(lab, browser, 'quota.ipynb')
    _run_all(page)
    cell = page.locator('.jp-Notebook .jp-CodeCell').nth(1)
    _wait_for(page, cell, 'text=/Quota.*window 1d/')
    _wait_for(page, cell, '.js-plotly-plot .bars', 60_000)
    labels = cell.locator('.js-plotly-plot').first.locator('.ytick text').all_text_contents()
    assert set(labels) >= {'project cpu_hours', 'train runs'}, labels
    # 2,900 CPU-s of 3,600 seeded, plus the few CPU-seconds of the magics scenario's run in the same project (its
    # journal is in the store by the time anything reads it): amber, near the soft mark
    _wait_for(page, cell, 'text=/0\\.8[0-4]\\d? \\/ 1 CPU-hours/')
    page.screenshot(path=str(SHOTS/'quota_widget.png'), full_page=True)
    page.close()


RUNS = ("import mlops_nb as mn\n"
        "for lr in (0.1, 0.3, 0.2):\n"
        "    with mn.track('compare', f'lr-{lr}', system_metrics=None):\n"
        "        mn.log_param('lr', lr); mn.log_param('seed', 7)\n"
        "        for step in range(20): mn.log_metric('loss', 1 / (1 + step * lr), step)\n"
        "        mn.log_metric('acc', round(0.8 + lr / 2, 3))\n"
        "print('made 3 runs')")


def test_runs_table_sorts_by_a_metric_and_overlays_the_curves_of_two_selected_runs(lab, browser):
    _nb(lab['root']/'runs.ipynb', '%load_ext mlops_nb', RUNS, '%mlops runs --experiment compare')
    page = _open(lab, browser, 'runs.ipynb')
    _run_all(page)
    _wait_text(page, 1, 'made 3 runs')
    cell = page.locator('.jp-Notebook .jp-CodeCell').nth(2)
    _wait_for(page, cell, '.mnrv-table tbody tr')
    names = lambda: cell.locator('.mnrv-table tbody td.mnrv-name').all_inner_texts()
    assert names() == ['lr-0.2', 'lr-0.3', 'lr-0.1'], names()               # newest first
    heads = cell.locator('.mnrv-table thead th').all_inner_texts()
    assert 'lr' in heads and 'acc' in heads and 'loss' in heads and 'seed' not in heads, heads  # only what differs
    cell.locator('.mnrv-table th[data-key="acc"]').click()                   # a metric: best first
    assert cell.locator('th[data-key="acc"]').get_attribute('aria-sort') == 'descending'
    assert names() == ['lr-0.3', 'lr-0.2', 'lr-0.1'], names()
    assert cell.locator('.mnrv-table tbody td.mnrv-metric[data-key="acc"]').all_inner_texts() == ['0.95', '0.9', '0.85']
    cell.locator('.mnrv-table th[data-key="acc"]').click()                   # again: the other way
    assert names() == ['lr-0.1', 'lr-0.2', 'lr-0.3'], names()
    cell.locator('input.mnrv-select').nth(0).check(); cell.locator('input.mnrv-select').nth(2).check()  # lr-0.1 and lr-0.3
    _wait_for(page, cell, 'svg.mnrv-curves[data-metric="acc"], svg.mnrv-curves')
    cell.locator('select.mnrv-metric').select_option('loss')
    curves = cell.locator('svg.mnrv-curves[data-metric="loss"] polyline.mnrv-curve')
    curves.nth(1).wait_for(timeout=30_000)
    assert curves.count() == 2
    assert all(len(curves.nth(i).get_attribute('points').split()) == 20 for i in range(2))  # 20 steps each, from the store
    assert cell.locator('svg.mnrv-parcoords polyline.mnrv-pc-on').count() == 2
    cell.locator('input.mnrv-filter').fill('lr>0.15')
    assert sorted(names()) == ['lr-0.2', 'lr-0.3'], names()
    page.screenshot(path=str(SHOTS/'runs_table.png'), full_page=True)
    page.close()
