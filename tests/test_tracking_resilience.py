"""Tracking survives what real notebooks meet: a tracking server that dies and comes back, a SIGKILLed kernel,
several kernels on one SQLite store, errors and interrupts in cells, and papermill or Jupyter server launching the kernel.

Everything here is real: an `mlflow server` process, ipykernels started with jupyter_client, papermill, `jupyter server`.
The store is read back with sqlite3, so what is asserted is what MLflow persisted."""
import json, os, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest

from conftest import mlops_nb_cli
from _resilience_helpers import (wait_until, free_port, clean_env, stop_group, query, run_by_name, metric_steps,
                                 run_tags, run_status, MlflowServer, Kernel, kernel)
from mlops_nb.config import resolve_settings
from mlops_nb.store import ensure_store

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _project_db(project): return project/'.mlops'/'mlflow.db'


def _journals(project): return sorted((project/'.mlops'/'journal').glob('*.log'))


# -- 1. a tracking server that is killed and comes back ------------------------------------------------------------
LOGGER = r'''
import json, sys, time
from pathlib import Path
import mlops_nb as mn
ctl, n = Path(sys.argv[1]), int(sys.argv[2])
run = mn.track('resilience', name='server-outage', system_metrics=None)
assert run.wait_for_id(60), mn.status()
t0 = time.monotonic()
for i in range(n):
    mn.log_metric('m', i, step=i)
    if i % 100 == 99: time.sleep(0.05)  # ~5 s of logging, so the server dies while metrics are flowing
(ctl/'logged').write_text(str(time.monotonic() - t0))
# no user action from here on: the process just lives on until the test has seen every metric in the store
deadline = time.monotonic() + 240
while not (ctl/'exit').exists() and time.monotonic() < deadline: time.sleep(0.1)
print('STATUS ' + json.dumps(mn.status()), flush=True)
'''


@pytest.mark.timeout(240)
def test_metrics_logged_while_the_server_is_down_land_when_it_returns(project, tmp_path, cache_dir):
    n, kill_at, down_for = 10_000, 3_000, 4.0
    srv_dir = tmp_path/'server'; srv_dir.mkdir()
    db = ensure_store(resolve_settings(project_dir=srv_dir, env={}, cache_dir=str(cache_dir))).db_path
    server = MlflowServer(db, free_port(), tmp_path/'server.log')
    ctl = tmp_path/'ctl'; ctl.mkdir()
    (tmp_path/'logger.py').write_text(LOGGER)
    proc = None
    try:
        server.start()
        env = clean_env(MLOPS_NB_PROJECT_DIR=project, MLOPS_NB_TRACKING_URI=server.url)
        proc = subprocess.Popen([sys.executable, str(tmp_path/'logger.py'), str(ctl), str(n)], env=env, cwd=project,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        run_uuid = wait_until(lambda: (run_by_name(db, 'server-outage') or [None])[0], 60, what='the run on the server')
        wait_until(lambda: len(metric_steps(db, run_uuid)) >= kill_at, 60, interval=0.02, what=f'{kill_at} metrics')
        server.kill()
        t_kill = time.monotonic()
        landed_before = len(metric_steps(db, run_uuid))
        assert landed_before < n, "all metrics arrived before the kill: log more slowly"
        time.sleep(down_for)
        assert proc.poll() is None
        server.start()
        t_back = time.monotonic()
        wait_until(lambda: len(set(metric_steps(db, run_uuid))) >= n, 150, interval=0.5, what=f'all {n} metrics')
        t_all = time.monotonic()
        print(f"killed after {landed_before} metrics; down {t_back - t_kill:.1f} s; "
              f"all {n} in the store {t_all - t_back:.1f} s after the restart")
        assert (ctl/'logged').exists()
        steps = metric_steps(db, run_uuid)
        assert sorted(set(steps)) == list(range(n))
        assert len(steps) == n, f"{len(steps) - n} metric rows stored twice"
        (ctl/'exit').touch()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        status = json.loads(next(l for l in out.splitlines() if l.startswith('STATUS '))[7:])
        assert status['backlog'] == 0 and status['store_ok'] is True
        assert run_status(db, run_uuid) == 'FINISHED'  # ended at exit, through the revived server
        assert _journals(project) == []  # drained: nothing left for replay
    finally:
        if proc and proc.poll() is None: stop_group(proc)
        server.stop()
