"""Shared fixtures: every test gets its own project folder and a clean environment; store templates are built once."""
import os, shutil, subprocess, sys, threading
from http.server import HTTPServer, BaseHTTPRequestHandler
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Markers say what a test starts: `pytest -m "not integration"` starts no process. Every process a test starts (its
# fixtures' included) goes through subprocess.Popen, so counting them here catches each test that starts one without
# the `integration` marker: it fails at its teardown, naming the marker to add.
_started = []
# Tests that start a process in files another engineer owns right now: their owner adds the marker, then the entry goes.
NOT_YET_MARKED = set()  # test ids exempt from the marker check while their owner marks them
_execute_child = subprocess.Popen._execute_child


# Probes a library runs once per process to size its thread pools (joblib/loky asks `lscpu` for physical cores): the
# test starts nothing of its own, and whether the probe runs depends only on which test came first in the worker.
LIBRARY_PROBES = ('lscpu',)


def _counted_execute_child(self, args, *a, **kw):
    cmd = args if isinstance(args, (str, bytes)) else ' '.join(map(str, args[:3]))
    if os.path.basename(str(cmd).split(' ', 1)[0]) not in LIBRARY_PROBES: _started.append(cmd)
    return _execute_child(self, args, *a, **kw)


subprocess.Popen._execute_child = _counted_execute_child

# Tests press Ctrl-C on the processes they start (SIGINT). A suite started from a background job (`cmd &` in a script,
# some CI runners) inherits SIGINT *ignored*, and an ignored signal stays ignored across exec: those children would
# never see it. Give this process a SIGINT handler again, so its children start with the default, as in a terminal.
import signal
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN: signal.signal(signal.SIGINT, signal.default_int_handler)


# Scheduling. The suite's wall time is its busiest worker's: pytest-xdist (`-n 3`) hands out tests in collection order,
# so the tests known to be long are collected first, longest first, and no worker is left alone with a 4-minute test at
# the end. The modules whose tests share one expensive module fixture (a Dask cluster, JupyterLab with Chromium, a
# registry of trained models, a running service) go to one worker as one unit, so that fixture starts once in the run.
# Figures: seconds per test on a loaded 2-core machine (`pytest -n 3 --durations=40`); a key is a node id or its prefix
# (the longest match counts); a test not listed counts as short.
SLOW = {
    # measured: `pytest -n 3 --durations=40` on the merged tree, machine load 7-11 (2026-12-02); setup + call
    'tests/test_serving.py': 30, 'tests/test_serving.py::test_the_service_answers': 228,  # one unit: ~15 tests, ~550 s in all
    'tests/test_serving_hostile.py': 20, 'tests/test_serving_hostile.py::test_hostile_bodies': 113,
    'tests/test_browser.py': 40, 'tests/test_browser.py::test_drift_widget': 111, 'tests/test_browser.py::test_magics_track': 103,
    'tests/test_executors.py': 25,  # one unit (its Dask cluster starts once)
    'tests/test_benchmarks.py::test_benchmark_smoke_run[': 30,
    'tests/test_benchmarks.py::test_benchmark_smoke_run[bench_serving.py]': 186,
    'tests/test_benchmarks.py::test_benchmark_smoke_run[bench_tracking.py]': 60,  # 109 before its children used the installed bytecode
    'tests/test_benchmarks.py::test_benchmark_smoke_run[bench_pipeline.py]': 60, 'tests/test_benchmarks.py::test_benchmark_smoke_run[bench_drift.py]': 76,
    'tests/test_benchmarks.py::test_benchmark_smoke_run[bench_scale.py]': 71, 'tests/test_benchmarks.py::test_benchmark_smoke_run[bench_load_ext.py]': 49,
    'tests/test_first_hour.py': 20, 'tests/test_first_hour.py::test_twenty_fresh_processes': 173,
    'tests/test_ci_guards.py::test_docs_build_offline_from_the_notebooks': 150, 'tests/test_ci_guards.py::test_this_repository_is_in_sync': 30,
    'tests/test_pandas2.py': 60,
    'tests/test_notebooks.py::test_notebooks[': 20,  # a layer's notebooks in one process; x3 the quiet figures
    'tests/test_notebooks.py::test_notebooks[20_tracking]': 200, 'tests/test_notebooks.py::test_notebooks[40_monitoring]': 140,
    'tests/test_notebooks.py::test_notebooks[70_deploy]': 100, 'tests/test_notebooks.py::test_notebooks[60_pipelines]': 90,
    'tests/test_notebooks.py::test_notebooks[50_models]': 75, 'tests/test_notebooks.py::test_notebooks[90_front]': 66,
    'tests/test_notebooks.py::test_notebooks[30_resources]': 54, 'tests/test_notebooks.py::test_notebooks[10_store]': 48,
    'tests/test_templates.py::test_train_reproduces': 69, 'tests/test_cli.py::test_quickstart_runs': 53, 'tests/test_cli.py::test_quickstart_json': 24,
    'tests/test_promotion.py': 30, 'tests/test_reproduce.py::test_seeded_notebook': 41, 'tests/test_tutorial.py': 60,
    'tests/test_performance.py::test_cbpe_accuracy': 20, 'tests/test_tracking_resilience.py': 20,
    'tests/test_quota.py::test_a_spent_shared_budget': 37, 'tests/test_quota.py::test_usage_cli': 31,
    'tests/test_quota.py::test_estimates_land': 30, 'tests/test_quota.py::test_a_pipeline_past': 23,
    'tests/test_capture.py::test_data_and_seed': 27, 'tests/test_capture.py::test_a_failing_capture': 26,
    'tests/test_store.py::test_mlflow_opens_the_copy': 27, 'tests/test_drift.py::test_cli_reads_a_whylogs': 24,
}
SHARED = {'tests/test_executors.py', 'tests/test_browser.py', 'tests/test_serving.py', 'tests/test_serving_hostile.py'}


def _unit(nodeid: str) -> str:
    "What one worker runs as a whole: the module, if its tests share a module fixture; else the test alone."
    module = nodeid.split('::', 1)[0]
    return module if module in SHARED else nodeid


def _cost(nodeid: str) -> float:
    keys = [k for k in SLOW if nodeid.startswith(k)]
    return SLOW[max(keys, key=len)] if keys else 0.0


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    "With `-n N` (`--dist load`, xdist's default), hand out the units above, in collection order, one at a time."
    if config.getvalue('dist') != 'load': return None  # an explicit --dist choice is the user's
    from xdist.scheduler import LoadScopeScheduling
    class LongestFirst(LoadScopeScheduling):
        def _split_scope(self, nodeid): return _unit(nodeid)
    return LongestFirst(config, log)


def pytest_collection_modifyitems(items):
    "The longest units first (see SLOW); `postgres` on every test that needs a PostgreSQL server (through a fixture)."
    for item in items:
        params = {str(v) for k, v in getattr(getattr(item, 'callspec', None), 'params', {}).items() if k in ('store', 'kind')}
        if {'databases', 'pg_admin', 'server'} & set(getattr(item, 'fixturenames', ())) or {'postgresql', 'server', 'mlflow-postgresql'} & params:
            item.add_marker('postgres')
    cost, first = {}, {}
    for i, item in enumerate(items):
        u = _unit(item.nodeid)
        cost[u] = cost.get(u, 0.0) + _cost(item.nodeid); first.setdefault(u, i)
    items.sort(key=lambda item: (-cost[_unit(item.nodeid)], first[_unit(item.nodeid)]))  # stable: a unit's tests keep their order


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    item._started_before = len(_started)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    res = yield
    started = _started[getattr(item, '_started_before', len(_started)):]
    if started and not item.get_closest_marker('integration') and item.nodeid.split('[')[0] not in NOT_YET_MARKED:
        why = f"{item.nodeid} started {len(started)} process(es) ({str(started[0])[:120]!r} first) but is not marked `integration`"
        pytest.fail(why + ": add `@pytest.mark.integration` to it or to its module's `pytestmark` (markers say what a test starts)",
                    pytrace=False)
    return res


@pytest.fixture(scope='session')
def cache_dir(tmp_path_factory, request):
    "A per-session cache, so the migrated store template is built once per test session, not per test (nor per xdist worker)."
    if not hasattr(request.config, 'workerinput'): return tmp_path_factory.mktemp('mlops-nb-cache')  # not under xdist
    shared = tmp_path_factory.getbasetemp().parent/'mlops-nb-cache'  # the run's folder, above each worker's: one template for all
    shared.mkdir(exist_ok=True)  # the template is written to a temp name and renamed: workers racing to build it both succeed
    return shared


@pytest.fixture
def env(monkeypatch, cache_dir):
    "The process environment without any mlops_nb or MLflow setting, and with the session cache."
    for k in list(os.environ):
        if k.startswith(('MLOPS_NB_', 'MLFLOW_')): monkeypatch.delenv(k)
    monkeypatch.setenv('MLOPS_NB_CACHE_DIR', str(cache_dir))
    return os.environ


@pytest.fixture
def project(tmp_path, env, monkeypatch):
    "An empty user project (a folder with a pyproject.toml), as the working directory."
    p = tmp_path/'proj'
    p.mkdir()
    (p/'pyproject.toml').write_text('[project]\nname = "demo-project"\n')
    monkeypatch.chdir(p)
    return p


def mlops_nb_cli(*args, cwd=None, env=None, timeout=120, check=False):
    "Run the installed `mlops-nb` console script, as a user would."
    exe = shutil.which('mlops-nb', path=str(BIN)) or shutil.which('mlops-nb')
    assert exe, "the mlops-nb console script is not installed: pip install -e ."
    r = subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check: assert r.returncode == 0, f"mlops-nb {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture
def health_server():
    "URL of a local HTTP server that answers 200 to every GET, like a tracking server's /health."
    class Health(BaseHTTPRequestHandler):
        def do_GET(self): self.send_response(200); self.end_headers(); self.wfile.write(b'OK')
        def log_message(self, *a): pass
    srv = HTTPServer(('127.0.0.1', 0), Health)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_port}'
    srv.shutdown(); srv.server_close()
