"""Real processes for the resilience tests: an MLflow tracking server, ipykernels, and reading an MLflow store with sqlite3.

Every helper takes a timeout and cleans up what it started, so a failing test never leaves a server or kernel behind."""
import json, os, signal, socket, sqlite3, subprocess, sys, time, urllib.request
from contextlib import closing, contextmanager
from pathlib import Path

# -- waiting ------------------------------------------------------------------------------------------------------
def wait_until(pred, timeout, interval=0.1, what='condition'):
    "Call `pred()` until it returns something truthy (returned) or `timeout` seconds pass (AssertionError)."
    deadline, last = time.monotonic() + timeout, None
    while True:
        try: last = pred()
        except (sqlite3.OperationalError, OSError) as e: last = e  # a store or file not there yet
        if last and not isinstance(last, Exception): return last
        if time.monotonic() > deadline: raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def clean_env(**extra):
    "`os.environ` (already without MLOPS_NB_*/MLFLOW_* thanks to the `env` fixture) without Jupyter session hints, plus `extra`."
    env = {k: v for k, v in os.environ.items() if k not in ('JPY_SESSION_NAME', 'JPY_PARENT_PID', 'MLOPS_NB_NOTEBOOK')}
    env['PYTHONUNBUFFERED'] = '1'
    return env | {k: str(v) for k, v in extra.items()}


def stop_group(proc, timeout=10):
    "SIGTERM the process group of `proc` (started with start_new_session=True), then SIGKILL it."
    if proc is None: return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try: os.killpg(proc.pid, sig)
        except ProcessLookupError: break
        try: proc.wait(timeout); break
        except subprocess.TimeoutExpired: continue
    try: os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group
    except ProcessLookupError: pass
    try: proc.wait(5)
    except subprocess.TimeoutExpired: pass


# -- the MLflow store, read directly --------------------------------------------------------------------------------
def query(db, sql, *args):
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as c:
        return c.execute(sql, args).fetchall()


def run_by_name(db, name):
    "`(run_uuid, status)` of the one run named `name`, or None."
    rows = query(db, "select run_uuid, status from runs where name=?", name)
    assert len(rows) <= 1, f"several runs named {name!r}: {rows}"
    return rows[0] if rows else None


def metric_steps(db, run_uuid, key='m'):
    "Steps of metric `key` of the run, one per stored row (so duplicates show)."
    return [s for (s,) in query(db, "select step from metrics where run_uuid=? and key=? order by step", run_uuid, key)]


def run_tags(db, run_uuid):
    return dict(query(db, "select key, value from tags where run_uuid=?", run_uuid))


def run_status(db, run_uuid):
    return query(db, "select status from runs where run_uuid=?", run_uuid)[0][0]


# -- an MLflow tracking server ------------------------------------------------------------------------------------
class MlflowServer:
    "`mlflow server` on an SQLite file, in its own process group, that a test can kill and start again on the same port."
    def __init__(self, db, port, log):
        self.db, self.port, self.log, self.proc = Path(db), port, Path(log), None
        self.url = f"http://127.0.0.1:{port}"

    def start(self, timeout=60):
        cmd = [sys.executable, '-m', 'mlflow', 'server', '--backend-store-uri', f"sqlite:///{self.db}",
               '--host', '127.0.0.1', '--port', str(self.port), '--workers', '1',
               '--default-artifact-root', str(self.db.parent/'artifacts')]
        env = clean_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION='false')
        with open(self.log, 'ab') as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mlflow server exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as r:
                    if r.status == 200: return self
            except OSError: time.sleep(0.2)
        raise AssertionError(f"mlflow server not healthy on {self.url} after {timeout} s:\n{self.log.read_text()[-3000:]}")

    def kill(self):
        "SIGKILL the server and everything it started, as a crash would."
        if self.proc is None: return
        try: os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError: pass
        self.proc.wait(10); self.proc = None

    def stop(self): stop_group(self.proc); self.proc = None


# -- an ipykernel -----------------------------------------------------------------------------------------------
class Kernel:
    "A real ipykernel (started with jupyter_client, or found through its connection file) and a blocking client for it."
    def __init__(self, kc, km=None):
        self.km, self.kc = km, kc
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    @classmethod
    def start(cls, env, cwd, connection_file):
        from jupyter_client import KernelManager
        km = KernelManager(kernel_name='python3', connection_file=str(connection_file))
        km.shutdown_wait_time = 30  # a graceful shutdown runs mlops_nb's atexit drain: give it time on a loaded machine
        km.start_kernel(env=env, cwd=str(cwd))
        try: return cls(km.client(), km)
        except BaseException: km.shutdown_kernel(now=True); raise

    @classmethod
    def attach(cls, connection_file):
        from jupyter_client import BlockingKernelClient
        kc = BlockingKernelClient(connection_file=str(connection_file)); kc.load_connection_file()
        return cls(kc)

    def run(self, code, timeout=60, allow_error=False):
        "Run `code`; return `{status, stdout, stderr, ename, evalue, traceback}`."
        out = dict(stdout='', stderr='', ename=None, evalue=None, traceback='')
        def hook(msg):
            t, c = msg['msg_type'], msg['content']
            if t == 'stream': out[c['name']] += c['text']
            elif t == 'error': out.update(ename=c['ename'], evalue=c['evalue'], traceback='\n'.join(c['traceback']))
            elif t in ('execute_result', 'display_data'): out['stdout'] += c['data'].get('text/plain', '') + '\n'
        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=hook, allow_stdin=False)
        out['status'] = reply['content']['status']
        if not allow_error:
            assert out['status'] == 'ok', f"cell failed: {code!r}\n{out['ename']}: {out['evalue']}\n{out['traceback']}\n{out['stderr']}"
        return out

    def value(self, expr, timeout=60):
        "The JSON value of `expr` in the kernel."
        r = self.run(f"import json as _j; print('\\x00' + _j.dumps({expr}))", timeout)
        return json.loads(r['stdout'].rsplit('\x00', 1)[1])

    def interrupt_while(self, code, started_marker, timeout=30):
        "Run `code`, which prints `started_marker` when under way, interrupt the kernel then, and return the reply content."
        msg_id = self.kc.execute(code)
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.1))
            if (msg['parent_header'].get('msg_id') == msg_id and msg['msg_type'] == 'stream'
                    and started_marker in msg['content']['text']): break
        self.km.interrupt_kernel()
        while True:
            reply = self.kc.get_shell_msg(timeout=max(deadline - time.monotonic(), 0.1))
            if reply['parent_header'].get('msg_id') == msg_id: return reply['content']

    def sigkill(self):
        "SIGKILL the kernel process (no atexit, no cleanup) and wait until it is gone."
        proc = self.km.provisioner.process
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def close(self):
        try: self.kc.stop_channels()
        except Exception: pass
        if self.km is None: return
        try:
            if self.km.has_kernel: self.km.shutdown_kernel(now=False)  # graceful: atexit ends runs, drains the journal
        except Exception: pass
        try: self.km.cleanup_resources()
        except Exception: pass


@contextmanager
def kernel(env, cwd, tmp):
    "A kernel started in `cwd` with environment `env`, shut down (or killed) at the end."
    k = Kernel.start(env, cwd, Path(tmp)/f"kernel-{time.time_ns()}.json")
    try: yield k
    finally: k.close()
