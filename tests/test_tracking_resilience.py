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
from mlops_nb.core.config import resolve_settings
from mlops_nb.store.client import ensure_store
from mlops_nb.core.names import meta_of

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope='session')
def warm_template(cache_dir, tmp_path_factory):
    "The session cache holds the migrated store template, so a test's first `%mlops track` only copies it."
    ensure_store(resolve_settings(project_dir=tmp_path_factory.mktemp('warm'), env={}, cache_dir=str(cache_dir)))
    return cache_dir


@pytest.fixture
def tracking_server(tmp_path, warm_template):
    "A real `mlflow server` on its own SQLite store (made by copying the template), started; stopped at teardown."
    srv_dir = tmp_path/'server'; srv_dir.mkdir()
    db = ensure_store(resolve_settings(project_dir=srv_dir, env={}, cache_dir=str(warm_template))).db_path
    server = MlflowServer(db, free_port(), tmp_path/'server.log').start()
    yield server
    server.stop()


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
deadline = time.monotonic() + 60  # the sync process drains the rest (a usage sample may have just been logged)
while (st := mn.status())['backlog'] and time.monotonic() < deadline: time.sleep(0.1)
print('STATUS ' + json.dumps(st), flush=True)
'''


@pytest.mark.timeout(240)
def test_metrics_logged_while_the_server_is_down_land_when_it_returns(project, tmp_path, tracking_server):
    n, kill_at, down_for = 10_000, 3_000, 4.0
    server, db = tracking_server, tracking_server.db
    ctl = tmp_path/'ctl'; ctl.mkdir()
    (tmp_path/'logger.py').write_text(LOGGER)
    proc = None
    try:
        env = clean_env(MLOPS_NB_PROJECT_DIR=project, MLOPS_NB_TRACKING_URI=server.url)
        errlog = open(tmp_path/'logger.err', 'w')  # a file, not a pipe: MLflow's retry warnings must never block it
        proc = subprocess.Popen([sys.executable, str(tmp_path/'logger.py'), str(ctl), str(n)], env=env, cwd=project,
                                stdout=subprocess.PIPE, stderr=errlog, text=True, start_new_session=True)
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
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, (tmp_path/'logger.err').read_text()
        status = json.loads(next(l for l in out.splitlines() if l.startswith('STATUS '))[7:])
        assert status['backlog'] == 0 and status['store_ok'] is True
        assert run_status(db, run_uuid) == 'FINISHED'  # ended at exit, through the revived server
        assert _journals(project) == []  # drained: nothing left for replay
    finally:
        if proc and proc.poll() is None: stop_group(proc)
        if proc: errlog.close()


PROBE = r'''
import json, os, sys, time
from pathlib import Path
import mlops_nb as mn
ctl = Path(sys.argv[1])
run = mn.track('resilience', name='status-probe', system_metrics=None)
assert run.wait_for_id(60), mn.status()
assert mn.sync(30)
(ctl/'started').touch()
deadline, i = time.monotonic() + 90, 0
while time.monotonic() < deadline:
    mn.log_metric('m', i, step=i); i += 1
    (ctl/'status.tmp').write_text(json.dumps(mn.status())); os.replace(ctl/'status.tmp', ctl/'status.json')
    time.sleep(0.1)
'''


@pytest.mark.timeout(120)
def test_status_reports_a_dead_server_within_seconds(project, tmp_path, tracking_server):
    server, db = tracking_server, tracking_server.db
    ctl = tmp_path/'ctl'; ctl.mkdir()
    (tmp_path/'probe.py').write_text(PROBE)
    proc = None
    try:
        env = clean_env(MLOPS_NB_PROJECT_DIR=project, MLOPS_NB_TRACKING_URI=server.url)
        with open(tmp_path/'probe.err', 'w') as errlog:
            proc = subprocess.Popen([sys.executable, str(tmp_path/'probe.py'), str(ctl)], env=env, cwd=project,
                                    stdout=subprocess.DEVNULL, stderr=errlog, start_new_session=True)
        wait_until(lambda: (ctl/'started').exists() or proc.poll() is not None, 60, what='the probe run')
        assert proc.poll() is None, (tmp_path/'probe.err').read_text()
        server.kill()
        # the sync process probes the store for 2 s before each round: the status says so within seconds
        status = wait_until(lambda: (st := json.loads((ctl/'status.json').read_text()))['store_ok'] is False and st, 20,
                            what='the status to report the dead server')
        assert status['backlog'] > 0  # metrics are queued: the store has not taken them
        assert status['store_ok'] is False and 'Error' in (status['last_error'] or ''), status
    finally:
        if proc: stop_group(proc)


# -- 2. a kernel SIGKILLed mid-run ----------------------------------------------------------------------------------
N_KILLED = 5_000


def _kernel_env(project, cache_dir, **extra):
    return clean_env(MLOPS_NB_PROJECT_DIR=project, MLOPS_NB_CACHE_DIR=cache_dir, **extra)


def _kill_a_tracking_kernel(project, cache_dir, tmp_path, name):
    """A kernel tracks run `name`, logs N_KILLED metrics and a param, and is SIGKILLed right after; return the journal.

    It runs with no sync process (MLOPS_NB_SYNC_DELAY, as under `mlops-nb run`): what it journaled waits for whoever
    comes next, which is what these tests check."""
    with kernel(_kernel_env(project, cache_dir, MLOPS_NB_SYNC_DELAY=1), project, tmp_path) as k:
        k.run('%load_ext mlops_nb')
        k.run(f'%mlops track --experiment resilience --name {name} --system-metrics 0')
        k.run(f"import mlops_nb as mn\nfor i in range({N_KILLED}): mn.log_metric('m', i, step=i)\nmn.log_param('p', 'before-kill')")
        k.sigkill()
    [journal] = _journals(project)
    return journal


def _assert_replayed_as_killed(project, name):
    db = _project_db(project)
    run = run_by_name(db, name)
    assert run is not None, f"run {name} never reached the store"
    run_uuid, status = run
    assert status == 'KILLED'
    assert metric_steps(db, run_uuid) == list(range(N_KILLED))
    assert query(db, "select value from params where run_uuid=? and key='p'", run_uuid) == [('before-kill',)]
    assert _journals(project) == []
    return run_uuid


@pytest.mark.timeout(120)
def test_killed_kernel_is_replayed_by_mlops_nb_sync(project, tmp_path, cache_dir, warm_template):
    journal = _kill_a_tracking_kernel(project, cache_dir, tmp_path, 'killed-then-cli')
    r = mlops_nb_cli('sync', '--json', cwd=project, env=clean_env(), check=True)
    [summary] = json.loads(r.stdout)['journals']
    assert summary['journal'] == journal.name and summary['rejected'] == 0 and summary['ended']
    run_uuid = _assert_replayed_as_killed(project, 'killed-then-cli')
    assert summary['killed'] == [run_uuid]
    assert mlops_nb_cli('sync', cwd=project, env=clean_env(), check=True).stdout.startswith('Nothing to sync')


@pytest.mark.timeout(120)
def test_killed_kernel_is_replayed_when_the_next_kernel_starts_tracking(project, tmp_path, cache_dir, warm_template):
    "No user action: the next `%mlops track` in the project replays the dead kernel's journal in the background."
    _kill_a_tracking_kernel(project, cache_dir, tmp_path, 'killed-then-kernel')
    db = _project_db(project)
    with kernel(_kernel_env(project, cache_dir), project, tmp_path) as k:
        k.run('%load_ext mlops_nb')
        k.run('%mlops track --experiment resilience --name next-kernel --system-metrics 0')
        def replayed_in_store():
            run = run_by_name(db, 'killed-then-kernel')
            return (run and run[1] == 'KILLED' and len(metric_steps(db, run[0])) == N_KILLED
                    and len(_journals(project)) == 1)  # only the live kernel's own journal is left
        wait_until(replayed_in_store, 60, what="the next kernel's sync process to finish the killed kernel's journal")
    _assert_replayed_as_killed(project, 'killed-then-kernel')
    assert run_by_name(db, 'next-kernel')[1] == 'FINISHED'  # ended when its kernel shut down


@pytest.mark.timeout(120)
def test_killed_kernel_is_replayed_at_the_next_track_even_with_a_cold_template_cache(project, tmp_path):
    "A new project, no store template cached yet (first use of this MLflow version): the kernel dies before its store exists."
    cold = tmp_path/'cold-cache'
    _kill_a_tracking_kernel(project, cold, tmp_path, 'killed-then-cold')
    assert not _project_db(project).exists()  # killed while the template was still being built
    db = _project_db(project)
    with kernel(_kernel_env(project, cold), project, tmp_path) as k:
        k.run('%load_ext mlops_nb')
        k.run('%mlops track --experiment resilience --name next-kernel --system-metrics 0')
        def replay_over():
            run = run_by_name(db, 'killed-then-cold')
            return run and run[1] == 'KILLED' and len(metric_steps(db, run[0])) == N_KILLED
        wait_until(replay_over, 60, interval=0.5, what='the replay of the killed kernel')


@pytest.mark.timeout(120)
def test_mlops_sync_in_the_next_kernel_waits_for_the_replay(project, tmp_path, cache_dir, warm_template):
    _kill_a_tracking_kernel(project, cache_dir, tmp_path, 'killed-then-sync')
    db = _project_db(project)
    with kernel(_kernel_env(project, cache_dir), project, tmp_path) as k:
        k.run('%load_ext mlops_nb')
        k.run('%mlops track --experiment resilience --name next-kernel --system-metrics 0')
        out = k.run('%mlops sync')['stdout']
        # `%mlops sync` has returned: the dead kernel's journal must be in the store now, not some time later
        run = run_by_name(db, 'killed-then-sync')
        state = dict(status=run and run[1], metrics=len(metric_steps(db, run[0])) if run else 0)
        assert state == dict(status='KILLED', metrics=N_KILLED), (out, state)
        assert out.startswith('Synced:'), out  # this kernel's sync process may have finished it already; either way it is in


# -- 3. four processes on one SQLite store -------------------------------------------------------------------------
WRITER = r'''
import json, sys, time
from pathlib import Path
import mlops_nb as mn
import mlflow.store.tracking.sqlalchemy_store  # imported before the start line, so the four start together
go, name, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
print('READY', flush=True)
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline: time.sleep(0.005)
run = mn.track('shared', name=name, system_metrics=None)
for i in range(n):
    mn.log_metric('m', i, step=i)
    if i % 100 == 0: mn.set_tag('progress', i)  # a tag wakes the flusher: many small concurrent transactions
ok = mn.sync(90)
print('STATUS ' + json.dumps(dict(synced=ok, run_id=run.run_id, status=mn.status())), flush=True)
'''


@pytest.mark.timeout(180)
def test_four_processes_share_one_sqlite_store_without_loss_or_lock_errors(project, tmp_path, warm_template):
    n, names = 2_000, [f'writer-{i}' for i in range(4)]
    (tmp_path/'writer.py').write_text(WRITER)
    go = tmp_path/'go'
    env = clean_env(MLOPS_NB_PROJECT_DIR=project)
    procs = []
    try:
        for name in names:  # the store does not exist yet: the four race to create it and the experiment too
            procs.append(subprocess.Popen([sys.executable, str(tmp_path/'writer.py'), str(go), name, str(n)], env=env,
                                          cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          start_new_session=True))
        for p in procs: assert p.stdout.readline().strip() == 'READY', p.stderr.read()
        go.touch()
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None: stop_group(p)
    db = _project_db(project)
    for name, p, (out, err) in zip(names, procs, results):
        assert p.returncode == 0, err
        assert 'locked' not in err.lower(), err
        s = json.loads(next(l for l in out.splitlines() if l.startswith('STATUS '))[7:])
        assert s['synced'], s  # everything logged before `sync()` is in the store (the rows are counted below)
        assert s['status']['last_error'] is None, s
        run_uuid, status = run_by_name(db, name)
        assert run_uuid == s['run_id'] and status == 'FINISHED'
        assert metric_steps(db, run_uuid) == list(range(n))
    assert len(query(db, "select experiment_id from experiments where name='shared'")) == 1
    assert _journals(project) == []


# -- 4. errors, interrupts and a second `%mlops track` in a kernel ----------------------------------------------------
@pytest.mark.timeout(120)
def test_cell_errors_interrupts_and_double_track_keep_the_run_coherent(project, tmp_path, cache_dir, warm_template):
    db = _project_db(project)
    with kernel(_kernel_env(project, cache_dir), project, tmp_path) as k:
        k.run('%load_ext mlops_nb')
        k.run('%mlops track --experiment resilience --name first --system-metrics 0')
        k.run('import mlops_nb as mn, time')
        first = k.value('mn.active_run().wait_for_id(30)')
        assert first
        active = "[mn.active_run().run_id, mn.active_run().status, len(mn.tracking.runs._State.runs)]"
        k.run("mn.log_metric('m', 1, step=1)")

        r = k.run('1/0', allow_error=True)
        assert (r['status'], r['ename']) == ('error', 'ZeroDivisionError')
        assert k.value(active) == [first, 'RUNNING', 1]
        k.run('%mlops log m=2 --step 2')

        reply = k.interrupt_while("print('sleeping', flush=True); time.sleep(60)", 'sleeping')
        assert (reply['status'], reply['ename']) == ('error', 'KeyboardInterrupt')
        assert k.value(active) == [first, 'RUNNING', 1]
        k.run('%mlops log m=3 --step 3')
        assert first in k.run('%mlops status')['stdout']

        out = k.run('%mlops track --experiment resilience --name second --system-metrics 0')['stdout']
        assert f"Stopped run {first} (FINISHED) to start this one" in out, out
        second = k.value('mn.active_run().wait_for_id(30)')
        assert second and second != first
        assert k.value(active) == [second, 'RUNNING', 1]
        k.run("mn.log_metric('m', 4, step=4)")
        assert k.value('mn.sync(60)') is True
        assert run_status(db, first) == 'FINISHED' and run_status(db, second) == 'RUNNING'
        assert metric_steps(db, first) == [1, 2, 3] and metric_steps(db, second) == [4]
        tags = run_tags(db, first)
        assert (meta_of(tags)['errors'], meta_of(tags)['cells_run']) == ('2', '10'), tags  # 10 cells since the track; errors: 1/0, the interrupt

        out = k.run('%mlops stop')['stdout']
        assert f"Stopped run {second} (FINISHED)" in out, out
        assert k.value('mn.sync(60)') is True
        assert k.value('mn.active_run() is None') is True
    assert run_status(db, second) == 'FINISHED'


# -- 5. which notebook ran: papermill and Jupyter server ------------------------------------------------------------
def _write_notebook(path, sources):
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata['kernelspec'] = dict(name='python3', display_name='Python 3', language='python')
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


@pytest.mark.timeout(120)
def test_papermill_run_records_the_input_notebook(project, tmp_path, cache_dir, warm_template):
    papermill = Path(sys.executable).parent/'papermill'
    assert papermill.exists(), "papermill is not installed in this environment (dev extra)"
    nbdir = tmp_path/'notebooks'
    _write_notebook(nbdir/'train.ipynb', ['%load_ext mlops_nb', '%mlops track --experiment resilience --name pm --system-metrics 0',
                                         '%mlops log m=1', '%mlops stop', 'import mlops_nb as mn\nassert mn.sync(60)'])
    r = subprocess.run([str(papermill), 'train.ipynb', 'out.ipynb', '--log-level', 'WARNING'], cwd=nbdir,
                       env=_kernel_env(project, cache_dir), capture_output=True, text=True, timeout=100)
    assert r.returncode == 0, r.stderr[-3000:]
    run_uuid, status = run_by_name(_project_db(project), 'pm')
    assert status == 'FINISHED'
    tags = run_tags(_project_db(project), run_uuid)
    assert tags['mlflow.source.name'] == str((nbdir/'train.ipynb').resolve())
    assert (meta_of(tags)['notebook_source'], tags['mlflow.source.type']) == ('papermill', 'NOTEBOOK')


@pytest.fixture
def jupyter_server(project, tmp_path, cache_dir, warm_template):
    "A real `jupyter server` (token auth) whose root is a temporary folder; yields (url, token, root, runtime_dir)."
    jupyter = Path(sys.executable).parent/'jupyter'
    if not (Path(sys.executable).parent/'jupyter-server').exists(): pytest.fail("jupyter_server is not installed (dev extra)")
    root, runtime, port, token = tmp_path/'root', tmp_path/'runtime', free_port(), 'resilience-token'
    root.mkdir(); runtime.mkdir()
    env = _kernel_env(project, cache_dir, JUPYTER_RUNTIME_DIR=runtime, JUPYTER_CONFIG_DIR=tmp_path/'jupyter-config')
    log = open(tmp_path/'jupyter-server.log', 'wb')
    proc = subprocess.Popen([str(jupyter), 'server', '--no-browser', '--ip=127.0.0.1', f'--port={port}',
                             f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={root}',
                             *(['--allow-root'] if os.geteuid() == 0 else [])],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    def up():
        assert proc.poll() is None, (tmp_path/'jupyter-server.log').read_text()[-3000:]
        with urllib.request.urlopen(urllib.request.Request(f"{url}/api/status", headers={'Authorization': f'token {token}'}), timeout=2) as r:
            return r.status == 200
    try:
        wait_until(up, 60, interval=0.25, what='jupyter server')
        yield url, token, root, runtime
    finally:
        stop_group(proc, timeout=15)
        log.close()


def _api(url, token, method, path, body=None):
    req = urllib.request.Request(f"{url}{path}", method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={'Authorization': f'token {token}', 'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=60) as r:
        data = r.read()
        return json.loads(data) if data else None


@pytest.mark.timeout(150)
def test_jupyter_server_session_records_the_notebook_path(project, jupyter_server):
    url, token, root, runtime = jupyter_server
    _write_notebook(root/'sub'/'nb.ipynb', [])
    session = _api(url, token, 'POST', '/api/sessions',
                   dict(path='sub/nb.ipynb', type='notebook', kernel=dict(name='python3')))
    kernel_pid = None
    try:
        conn = wait_until(lambda: (runtime/f"kernel-{session['kernel']['id']}.json").exists()
                          and runtime/f"kernel-{session['kernel']['id']}.json", 30, what='the kernel connection file')
        k = Kernel.attach(conn)
        try:
            kernel_pid = k.value('__import__("os").getpid()')
            assert k.value('__import__("os").environ.get("JPY_SESSION_NAME")') == 'sub/nb.ipynb'
            k.run('%load_ext mlops_nb')
            out = k.run('%mlops track --experiment resilience --name from-server --system-metrics 0')['stdout']
            assert 'nb.ipynb' in out, out
            k.run('%mlops stop')
            # JupyterLab renames a notebook through the contents API and moves its session: the kernel's
            # JPY_SESSION_NAME still says nb.ipynb, the server's sessions API says renamed.ipynb
            _api(url, token, 'PATCH', '/api/contents/sub/nb.ipynb', dict(path='sub/renamed.ipynb'))
            _api(url, token, 'PATCH', f"/api/sessions/{session['id']}", dict(path='sub/renamed.ipynb', name='renamed.ipynb'))
            k.run('%mlops track --experiment resilience --name after-rename --system-metrics 0')
            k.run('%mlops stop')
            assert k.value('__import__("mlops_nb").sync(60)') is True
        finally: k.close()
    finally:
        try: _api(url, token, 'DELETE', f"/api/sessions/{session['id']}")
        finally:
            try:  # the server should have shut the kernel down; make sure, without touching a reused pid
                if kernel_pid and b'ipykernel' in Path(f'/proc/{kernel_pid}/cmdline').read_bytes(): os.kill(kernel_pid, 9)
            except (OSError, ProcessLookupError): pass
    run_uuid, status = run_by_name(_project_db(project), 'from-server')
    tags = run_tags(_project_db(project), run_uuid)
    assert status == 'FINISHED'
    assert tags['mlflow.source.name'].endswith('sub/nb.ipynb'), tags
    assert tags['mlflow.source.name'] == str((root/'sub'/'nb.ipynb').resolve())
    assert meta_of(tags)['notebook_source'] == 'jupyter'
    renamed = run_tags(_project_db(project), run_by_name(_project_db(project), 'after-rename')[0])
    assert renamed['mlflow.source.name'] == str((root/'sub'/'renamed.ipynb').resolve()), renamed
    assert renamed['mlops_nb.pipeline'] == 'renamed.ipynb' and meta_of(renamed).get('notebook.sha256')
