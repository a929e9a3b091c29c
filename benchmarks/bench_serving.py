"""The scoring service under load on loopback, against MLflow's own scoring server; the canary split; a rollback.

    python benchmarks/bench_serving.py              # 60 s of load, 10,000 canary keys, 3 rollbacks: ~4 minutes
    python benchmarks/bench_serving.py --quick      # 15 s of load, 2,000 canary keys, 1 rollback: ~2 minutes
    python benchmarks/bench_serving.py --smoke      # 2 s of load at 50/s, 100 keys, 1 rollback, 10 hostile bodies: CI runs this
    python benchmarks/bench_serving.py [--seconds 60] [--rate 200] [--keys 10000] [--rollbacks 3] [--skip-peer]

Setup     a temporary project: LightGBM (100 trees) trained on scikit-learn's breast-cancer data (30 float columns) and
          registered as `churn` v1 (promoted to `champion`), a second LightGBM as v2, and v3, a pyfunc that raises on
          every call (a challenger whose feature service is down). Nothing is left behind: the project, the servers'
          logs and the load generator's results live in one temp folder, and every server is stopped with SIGINT.
Load      an open-loop generator in its own process (asyncio + httpx, a pool of 64 connections): one single-row request
          (a real feature row, 500 distinct ones in turn) every 5 ms (200/s), each scheduled in advance, so a slow
          server cannot slow the generator down; latency counts from the scheduled send time (queueing included: no
          coordinated omission); a request unanswered 10 s after its time is an error (a timeout). The generator's own
          lateness (actual send - scheduled) is reported so that its share of a bad figure shows.
          Ours: `mlops-nb serve churn` (POST /predict, inputs checked against the signature, metrics, inference
          profiles), `--seconds` at `--rate`, after 200 warm-up requests at 50/s (reported apart: the first requests
          after /health answers). The peer: `mlflow models serve -m
          models:/churn/1 --env-manager local` (POST /invocations with `dataframe_records`), the same model and rows,
          at the same rate for at most 15 s (a server that falls behind shows it by then), and both at 50/s for 15 s, a
          load both sustain, for a latency ratio that is not a ratio to timeouts. Also each server's capacity:
          closed loop, 8 connections back to back for 5 s. MLflow's server runs as shipped (one uvicorn worker, an
          access-log line per request, written to a file here: an unread pipe would stall it).
          Target: `--rate` sustained with 0 errors; p50/p95/p99 reported, with the ratio to MLflow's.
Canary    `mlops-nb serve churn --canary 0.05 --challenger 2`; after the same warm-up, `--keys` requests at `--rate`,
          each with a distinct `X-Request-Key` (`key-0`, `key-1`, ...); the challenger's share from the answers'
          `variant`, and per key whether the service routed it as `mlops_nb.deploy.to_challenger` assigns it.
          Target: within +-1 percentage point of 5 %.
Rollback  `mlops-nb serve churn --canary 0.2 --challenger 3 --guard-window 10` under 100 requests/s, `--rollbacks`
          times (a fresh server each): the time from the first request routed to the challenger (and from the first
          request) to the rollback, from the server's own event time in /health (cross-checked by polling /health every
          50 ms). Target: within one guard window (10 s), and 0 errors to callers (the champion answers for a
          challenger that raises).
Hostile  `mlops-nb serve churn` (default `--max-body-mb 4`), and the peer, under 4 clients in another process
          sending `--hostile-bodies` bodies in turn: 16 MB declared, 16 MB chunked, 3.9 MB nested 1.9 M levels deep, 3.9 MB of
          `1e308` values, 3.9 MB of too many rows, truncated JSON; meanwhile /health (the peer: /ping) is polled every 50 ms
          from this process. Reported: the answers' statuses, the server's peak RSS over its RSS before (VmHWM after
          clear_refs, /proc) and that of its parser process, /health median / p95 / max. Targets: peak RSS + <= 100 MB
          (ours), /health p95 <= 100 ms.
    python benchmarks/bench_serving.py --hostile-only [--hostile-bodies 200] [--skip-peer]   # this part alone: ~1.5 minutes
Figures are medians where repeated. The generator, the servers and anything else running share this machine's cores
(2 here): the CPU each used during each load is printed, with what the rest of the machine used meanwhile.
"""
import argparse, json, os, re, signal, socket, statistics, subprocess, sys, tempfile, threading, time
from collections import Counter
from pathlib import Path

BIN = Path(sys.executable).parent
DEADLINE = 10.0  # seconds after its scheduled time that a request counts as failed

GENERATOR = r'''
import asyncio, json, os, sys, time
import httpx
cfg = json.loads(sys.argv[1])
rows = json.load(open(cfg['rows']))
N, RATE, DEADLINE, PEER = cfg['requests'], cfg['rate'], cfg['deadline'], cfg['peer']
bodies = [json.dumps({'dataframe_records': [r]} if PEER else {'rows': [r]}).encode() for r in rows]
late, lat, status, variant, version = ([None]*N for _ in range(5))

async def post(client, i):
    return await client.post(cfg['path'], content=bodies[i % len(bodies)],
                             headers={'content-type': 'application/json', 'x-request-key': f"{cfg['key_prefix']}{i}"})

async def one(client, i, due):
    late[i] = (time.perf_counter() - due) * 1000
    try:
        r = await asyncio.wait_for(post(client, i), DEADLINE - (time.perf_counter() - due))
        status[i] = str(r.status_code)
        if r.status_code == 200 and not PEER:
            j = r.json(); variant[i], version[i] = j.get('variant'), j.get('version')
    except asyncio.TimeoutError: status[i] = 'timeout'
    except Exception as e: status[i] = type(e).__name__
    lat[i] = (time.perf_counter() - due) * 1000

async def closed(client, seconds, conns):
    done, t_end = [], time.perf_counter() + seconds
    async def worker(w):
        i = w
        while time.perf_counter() < t_end:
            t = time.perf_counter()
            try: ok = (await post(client, i)).status_code == 200
            except Exception: ok = False
            done.append((ok, (time.perf_counter() - t) * 1000)); i += conns
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(conns)))
    return dict(requests=len(done), ok=sum(o for o, _ in done), seconds=time.perf_counter() - t0,
                p50=sorted(l for _, l in done)[len(done) // 2] if done else None)

async def main():
    # idle connections dropped after 2 s, before uvicorn's 5 s keep-alive closes them under a request (both servers use uvicorn)
    limits = httpx.Limits(max_connections=cfg['connections'], max_keepalive_connections=cfg['connections'], keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=cfg['url'], timeout=DEADLINE + 5, limits=limits) as client:
        if cfg.get('closed'):
            out = await closed(client, cfg['closed'], cfg['connections'])
            out['cpu'] = time.process_time(); return out
        t0 = time.perf_counter() + 0.2
        e0 = time.time() - time.perf_counter() + t0  # t0 on the wall clock, to line up with the server's event times
        tasks, stop = [], cfg.get('stop_file')
        for i in range(N):
            due = t0 + i / RATE
            d = due - time.perf_counter()
            if d > 0: await asyncio.sleep(d)
            if stop and i % 20 == 0 and os.path.exists(stop): break
            tasks.append(asyncio.create_task(one(client, i, due)))
        await asyncio.gather(*tasks)
        end = time.perf_counter()
    n = len(tasks)
    return dict(t0_epoch=e0, sent=n, rate=RATE, span=end - t0, late=late[:n], lat=lat[:n], status=status[:n],
                variant=variant[:n], version=version[:n], cpu=time.process_time())

json.dump(asyncio.run(main()), open(cfg['out'], 'w'))
'''

FAILING_MODEL = '''
import mlflow
from mlflow.pyfunc import PythonModel

class Failing(PythonModel):
    def predict(self, context, model_input, params=None):
        raise RuntimeError("feature service timed out")

mlflow.models.set_model(Failing())
'''


def note(msg): print(f"  .. {msg}", file=sys.stderr, flush=True)
def median(xs): return statistics.median(xs)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def setup(proj: Path):
    "Register churn v1 (champion), v2 and a failing v3 in a fresh project; write the rows the generator sends."
    (proj/'pyproject.toml').write_text('[project]\nname = "bench-serving"\n')
    import lightgbm as lgb, mlflow, mlflow.pyfunc
    from mlflow.models import infer_signature
    from sklearn.datasets import load_breast_cancer
    import mlops_nb as mn
    from mlops_nb.tracking import runs as tracking
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.store.client import open_client
    import warnings; warnings.filterwarnings('ignore', category=UserWarning)  # MLflow's hints (integer outputs, type hints)
    s = resolve_settings(project_dir=proj, env={})
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    for seed, leaves in ((1, 31), (2, 15)):
        with mn.track('bench', settings=s, system_metrics=None):
            model = lgb.LGBMClassifier(n_estimators=100, num_leaves=leaves, random_state=seed, verbose=-1).fit(X, y)
            mn.log_model(model, 'lightgbm', input_example=X.head(5))
            mn.register_candidate('churn')
    c = open_client(s)
    (proj/'failing_model.py').write_text(FAILING_MODEL)
    mlflow.pyfunc.save_model(str(proj/'failing'), python_model=str(proj/'failing_model.py'), signature=infer_signature(X.head(5)))
    run = c.create_run(c.get_experiment_by_name('bench').experiment_id, run_name='failing')
    c.log_artifacts(run.info.run_id, str(proj/'failing'), 'model'); c.set_terminated(run.info.run_id)
    v = c.create_model_version('churn', run.info.artifact_uri + '/model', run_id=run.info.run_id).version
    mn.promote('churn@1', 'champion', settings=s, as_='bench')
    tracking.sync(60)
    versions = sorted(int(m.version) for m in c.search_model_versions("name = 'churn'"))
    if versions != [1, 2, 3] or str(v) != '3': raise SystemExit(f"FAILED: setup registered versions {versions}")
    (proj/'rows.json').write_text(json.dumps(X.sample(500, random_state=0).to_dict(orient='records')))
    return s


def tree_cpu(pid):
    "CPU seconds (user + system) of process `pid` and its children."
    import psutil
    try:
        ps = [psutil.Process(pid)]; ps += ps[0].children(recursive=True)
    except psutil.NoSuchProcess: return 0.0
    tot = 0.0
    for p in ps:
        try: t = p.cpu_times(); tot += t.user + t.system
        except psutil.NoSuchProcess: pass
    return tot


def machine_busy():
    "(busy, stolen): CPU seconds the whole machine has spent busy (all cores), and stolen by the hypervisor, from /proc/stat."
    f = [int(x) for x in open('/proc/stat').readline().split()[1:]]
    hz = os.sysconf('SC_CLK_TCK')
    return (sum(f[:7]) - f[3] - f[4]) / hz, f[7] / hz


class Server:
    "A server process in its own session, its output to a log file; ready once `health` answers 200."
    def __init__(self, args, proj, env, log, health='/health'):
        import httpx
        self.port, self.log = free_port(), Path(log)
        self.args = [a.replace('{port}', str(self.port)) for a in args]
        t0 = time.perf_counter()
        with open(self.log, 'w') as out:
            self.p = subprocess.Popen(self.args, cwd=proj, env=env, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        self.url = f'http://127.0.0.1:{self.port}'
        while time.perf_counter() - t0 < 180:
            if self.p.poll() is not None:
                raise RuntimeError(f"{' '.join(self.args[:3])} exited {self.p.returncode}: {self.log.read_text()[-1500:]}")
            try:
                if httpx.get(self.url + health, timeout=2).status_code == 200: break
            except httpx.TransportError: pass
            time.sleep(0.2)
        else:
            self.stop(); raise RuntimeError(f"{' '.join(self.args[:3])} did not come up in 180 s: {self.log.read_text()[-1500:]}")
        self.ready_s = time.perf_counter() - t0

    def cpu(self): return tree_cpu(self.p.pid)

    def stop(self):
        "SIGINT to the process group (as Ctrl-C would); its exit code (SIGKILL after 60 s: -9)."
        t0 = time.perf_counter()
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGINT)
            try: self.p.wait(60)
            except subprocess.TimeoutExpired: os.killpg(self.p.pid, signal.SIGKILL); self.p.wait()
        try: os.killpg(self.p.pid, 0); os.killpg(self.p.pid, signal.SIGKILL)  # nothing of its group may outlive it
        except ProcessLookupError: pass
        self.rc, self.stop_s = self.p.returncode, time.perf_counter() - t0
        lines = self.log.read_text(errors='replace').splitlines()
        self.problems = Counter([l[:160] for l in lines if re.match(r'(ERROR|WARNING|[\w.]+(Error|Exception|Disconnect|Group)\b)', l)
                                 and 'UserWarning' not in l])  # error lines, and the exception ending each traceback
        return self.rc


class Load:
    "Runs the generator against a server; what each side (and the rest of the machine) used of the CPU meanwhile."
    def __init__(self, root):
        self.root, self.k = Path(root), 0

    def __call__(self, srv, path, rate, requests, peer=False, key_prefix='req-', stop_file=None, closed=None):
        self.k += 1; out = self.root/f'load-{self.k}.json'
        cfg = dict(url=srv.url, path=path, rows=str(self.root/'proj'/'rows.json'), rate=rate, requests=requests, peer=peer,
                   deadline=DEADLINE, connections=8 if closed else 64, key_prefix=key_prefix, out=str(out),
                   stop_file=stop_file and str(stop_file), closed=closed)
        s0, m0, w0 = srv.cpu(), machine_busy(), time.perf_counter()
        r = subprocess.run([sys.executable, '-c', GENERATOR, json.dumps(cfg)], capture_output=True, text=True,
                           timeout=(closed or requests / rate) + DEADLINE + 120)
        m1 = machine_busy()
        wall, server_cpu, busy, stolen = time.perf_counter() - w0, srv.cpu() - s0, m1[0] - m0[0], m1[1] - m0[1]
        if r.returncode: raise RuntimeError(f"the load generator failed: {r.stderr[-2000:]}")
        res = json.loads(out.read_text()); out.unlink()
        res['cpu_use'] = dict(server=server_cpu / wall, generator=res['cpu'] / wall,
                              other=max(0.0, busy - server_cpu - res['cpu']) / wall, stolen=stolen / wall)
        return res


def stats(res, window_s):
    "Rates, errors by kind, latency quantiles (from the scheduled time; errors included), per-window p99s."
    n, lat = res['sent'], res['lat']
    ok = sum(s == '200' for s in res['status'])
    srt = sorted(lat)
    q = lambda xs, p: xs[min(len(xs) - 1, int(p * len(xs)))]
    per = int(res['rate'] * window_s)
    wins = [q(sorted(lat[i:i + per]), 0.99) for i in range(0, n, per) if len(lat[i:i + per]) >= per // 2]
    return dict(sent=n, ok=ok, errors=n - ok, kinds=dict(Counter(s for s in res['status'] if s != '200')),
                offered=res['rate'], achieved=ok / res['span'], p50=q(srt, 0.50), p95=q(srt, 0.95), p99=q(srt, 0.99),
                max=srt[-1], windows=wins, window_s=window_s, late_p99=q(sorted(res['late']), 0.99), late_max=max(res['late']),
                cpu=res['cpu_use'])


def ms(x):
    return f"{x/1000:.1f} s" if x >= 1000 else f"{x:.1f} ms" if x >= 10 else f"{x:.2f} ms"


def show(name, m, windows=True):
    errs = f"{m['errors']:,}" + (f" ({', '.join(f'{k}: {v:,}' for k, v in sorted(m['kinds'].items()))})" if m['kinds'] else '')
    print(f"  {name:<34}{m['offered']:>5g}/s -> {m['achieved']:6.1f}/s ok   errors {errs:<8}  p50 {ms(m['p50']):>8}  "
          f"p95 {ms(m['p95']):>8}  p99 {ms(m['p99']):>8}  max {ms(m['max']):>8}")
    c = m['cpu']
    extra = f"p99 by {m['window_s']:g} s window: {', '.join(ms(x) for x in m['windows'])}; " if windows and len(m['windows']) > 1 else ''
    print(f"  {'':<34}{extra}generator late p99 {ms(m['late_p99'])} (max {ms(m['late_max'])}); "
          f"CPU in cores: server {c['server']:.2f}, generator {c['generator']:.2f}, rest of the machine {c['other']:.2f}"
          + (f", stolen by the hypervisor {c['stolen']:.2f}" if c['stolen'] >= 0.01 else ''))


def pct(x): return f"{x:.2%}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help="15 s of load, 2,000 canary keys, 1 rollback")
    ap.add_argument('--smoke', action='store_true', help="the smallest run that takes every path once (seconds, not minutes); CI runs it so the script cannot rot")
    ap.add_argument('--seconds', type=float, default=None, help="seconds of load on our server [60; --quick 15]")
    ap.add_argument('--rate', type=float, default=200.0, help="requests per second [200]")
    ap.add_argument('--keys', type=int, default=None, help="canary keys, one request each [10000; --quick 2000]")
    ap.add_argument('--rollbacks', type=int, default=None, help="rollback repetitions [3; --quick 1]")
    ap.add_argument('--skip-peer', action='store_true', help="do not measure MLflow's scoring server")
    ap.add_argument('--hostile-only', action='store_true', help="only the hostile-bodies part (memory bound, /health latency)")
    ap.add_argument('--hostile-bodies', type=int, default=None, help="bodies sent in the hostile part [200; --quick 60]")
    a = ap.parse_args()
    if a.smoke:
        a.seconds, a.keys, a.rollbacks, a.hostile_bodies = a.seconds or 2.0, a.keys or 100, a.rollbacks or 1, a.hostile_bodies or 10
        if '--rate' not in sys.argv: a.rate = 50.0
    seconds = a.seconds or (15.0 if a.quick else 60.0)
    keys, reps = a.keys or (2000 if a.quick else 10_000), a.rollbacks or (1 if a.quick else 3)
    t_all, load0 = time.perf_counter(), os.getloadavg()
    import platform, importlib.metadata as md
    versions = ', '.join(f"{p} {md.version(p)}" for p in ('mlflow', 'lightgbm', 'uvicorn', 'starlette', 'httpx'))
    env = {k: v for k, v in os.environ.items() if not k.startswith(('MLOPS_NB_', 'MLFLOW_'))} | {
        'MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR': 'false', 'PATH': f"{BIN}:{os.environ['PATH']}", 'PYTHONUNBUFFERED': '1'}
    with tempfile.TemporaryDirectory(prefix='bench-serving-') as d:
        root = Path(d); proj = root/'proj'; proj.mkdir()
        env['TMPDIR'] = str(root/'tmp'); (root/'tmp').mkdir()  # the servers' model downloads: gone with the folder
        note("setup: two LightGBM versions and a failing one in a fresh store")
        t = time.perf_counter(); s = setup(proj); setup_s = time.perf_counter() - t
        serve = [str(BIN/'mlops-nb'), 'serve', 'churn', '--port', '{port}']
        load, k = Load(root), [0]
        def start(args, **kw):
            k[0] += 1; return Server(args, proj, env | kw.pop('env', {}), root/f'server-{k[0]}.log', **kw)
        nh = a.hostile_bodies or (60 if a.quick else 200)
        if a.hostile_only:
            note(f"hostile: {nh} bodies, ours" + ('' if a.skip_peer else ' and MLflow\'s'))
            hostile_report(start, serve, s, nh, a.skip_peer)
            return 0
        n, low, n_low = int(seconds * a.rate), 50.0, int(min(seconds, 15) * 50)
        peer_s = min(seconds, 15.0)
        rcs, ready = {}, {}

        note(f"ours: warm-up, {seconds:g} s at {a.rate:g}/s, {n_low // 50} s at 50/s, 5 s closed loop")
        srv = start(serve); ready['ours'] = srv.ready_s
        try:
            warm = {'ours': stats(load(srv, '/predict', 50.0, 200, key_prefix='warm-'), 5)}  # warm-up, apart (the peer gets one too)
            ours = stats(load(srv, '/predict', a.rate, n), 15 if seconds >= 30 else 5)
            ours_low = stats(load(srv, '/predict', low, n_low), 5)
            ours_cap = load(srv, '/predict', 0, 0, closed=5.0)
        finally: srv.stop(); rcs['mlops-nb serve'] = srv

        peer = peer_low = peer_cap = None; peer_why = ''
        if not a.skip_peer:
            note(f"MLflow: warm-up, {n_low // 50} s at 50/s, {peer_s:g} s at {a.rate:g}/s, 5 s closed loop")
            try:
                srv = start([str(BIN/'mlflow'), 'models', 'serve', '-m', 'models:/churn/1', '--env-manager', 'local', '-w', '1',
                             '-h', '127.0.0.1', '-p', '{port}'], env={'MLFLOW_TRACKING_URI': s.tracking_uri}, health='/ping')
                ready['mlflow'] = srv.ready_s
                try:
                    warm['mlflow'] = stats(load(srv, '/invocations', 50.0, 200, peer=True, key_prefix='warm-'), 5)
                    peer_low = stats(load(srv, '/invocations', low, n_low, peer=True), 5)
                    peer_cap = load(srv, '/invocations', 0, 0, peer=True, closed=5.0)
                    peer = stats(load(srv, '/invocations', a.rate, int(peer_s * a.rate), peer=True), 5)
                finally: srv.stop(); rcs['mlflow models serve'] = srv
            except Exception as e: peer_why = f"{type(e).__name__}: {str(e)[:600]}"

        note(f"canary: {keys:,} keys at {a.rate:g}/s")
        srv = start(serve + ['--canary', '0.05', '--challenger', '2']); ready['ours, canary'] = srv.ready_s
        try:
            warm['ours, canary'] = stats(load(srv, '/predict', 50.0, 200, key_prefix='warm-'), 5)
            can_raw = load(srv, '/predict', a.rate, keys, key_prefix='key-')
        finally: srv.stop(); rcs['mlops-nb serve --canary'] = srv
        can = stats(can_raw, 15 if keys / a.rate >= 30 else 5)

        rb = []
        for rep in range(reps):
            note(f"rollback {rep + 1} of {reps}")
            rb.append(rollback(start, serve, load, root, rep))
            rcs[f'mlops-nb serve (rollback {rep + 1})'] = rb[-1]['server']

        # -- report ------------------------------------------------------------------------------------------------
        print(f"Python {platform.python_version()}, {versions}; {os.cpu_count()} cores; setup {setup_s:.0f} s; "
              f"ready in (start to /health 200): " + ', '.join(f"{k} {v:.1f} s" for k, v in ready.items()))
        print(f"\n1. Load: {a.rate:g} single-row requests/s, open loop (scheduled every {1000/a.rate:g} ms), latency from the "
              f"scheduled time, errors = any status but 200 or no answer within {DEADLINE:g} s")
        show(f'mlops-nb serve, {seconds:g} s', ours)
        if peer: show(f'mlflow models serve, {peer_s:g} s', peer)
        print(f"  at {low:g}/s, a load both sustain:")
        show(f'mlops-nb serve, {n_low // 50} s', ours_low, windows=False)
        if peer_low: show(f'mlflow models serve, {n_low // 50} s', peer_low, windows=False)
        cap = lambda c: f"{c['ok'] / c['seconds']:.0f} ok/s ({c['requests'] - c['ok']} failed), p50 {ms(c['p50'])}"
        print("  warm-up, apart: the first 200 requests after /health answered, at 50/s: " + '; '.join(
            f"{k} p50 {ms(w['p50'])}, p99 {ms(w['p99'])}, max {ms(w['max'])}, {w['errors']} errors" for k, w in warm.items()))
        print(f"  capacity, closed loop (8 connections back to back, 5 s): mlops-nb serve {cap(ours_cap)}" +
              (f"; mlflow models serve {cap(peer_cap)}" if peer_cap else ''))
        met1 = ours['errors'] == 0 and ours['achieved'] >= 0.99 * a.rate
        print(f"  -> {a.rate:g}/s sustained for {seconds:g} s with 0 errors: {'PASS' if met1 else 'FAIL'} "
              f"({ours['achieved']:.1f}/s answered ok, {ours['errors']} errors; target {a.rate:g}/s, 0 errors)")
        if peer:
            print(f"     the same load on MLflow's server: {peer['achieved']:.1f}/s answered ok, {peer['errors']:,} errors of {peer['sent']:,}; "
                  f"ours / MLflow's: p50 {ours['p50']/peer['p50']:.3g}x, p99 {ours['p99']/peer['p99']:.3g}x"
                  + (" (MLflow's p99 is a timeout: the ratio is bounded by it)" if peer['p99'] >= DEADLINE * 1000 else ''))
        if peer_low:
            print(f"     at {low:g}/s: ours / MLflow's p50 {ours_low['p50']/peer_low['p50']:.2f}x, p95 {ours_low['p95']/peer_low['p95']:.2f}x, "
                  f"p99 {ours_low['p99']/peer_low['p99']:.2f}x; capacity ours / MLflow's "
                  f"{(ours_cap['ok']/ours_cap['seconds'])/(peer_cap['ok']/peer_cap['seconds']):.2f}x")
        if peer_why: print(f"  MLflow's scoring server could not be measured: {peer_why}")

        print(f"\n2. Canary split: --canary 0.05 --challenger 2, {keys:,} requests at {a.rate:g}/s, one distinct key each")
        from mlops_nb.deploy.rollout import to_challenger
        answered = [(i, v) for i, (st, v) in enumerate(zip(can_raw['status'], can_raw['variant'])) if st == '200']
        share = sum(v == 'challenger' for _, v in answered) / max(1, len(answered))
        wrong = sum((v == 'challenger') != to_challenger(f'key-{i}', 0.05, 'churn:2') for i, v in answered)
        sd = (0.05 * 0.95 / keys) ** 0.5
        big = 1_000_000
        hash_share = sum(to_challenger(f'key-{i}', 0.05, 'churn:2') for i in range(big)) / big
        met2 = abs(share - 0.05) <= 0.01
        print(f"  challenger share {pct(share)} of {len(answered):,} answers: {'PASS' if met2 else 'FAIL'} (target 5.00 % +- 1 point); "
              f"keys routed otherwise than `to_challenger` assigns them: {wrong}; errors {can['errors']}")
        print(f"  sampling: the binomial sd at {keys:,} keys is {sd*100:.2f} points (95 %: +-{1.96*sd*100:.2f}), so +-1 point is "
              f"+-{0.01/sd:.1f} sd; the same hash over {big:,} keys of this form (key-0 ... key-{big-1}) gives {pct(hash_share)}")
        show('with the canary on', can)

        print(f"\n3. Rollback: --canary 0.2 --challenger 3 (raises on every call) --guard-window 10, 100 requests/s, {reps} "
              f"repetition{'s' if reps > 1 else ''} (a fresh server each)")
        for i, r in enumerate(rb):
            if r['event'] is None:
                print(f"  {i + 1}: NOT rolled back in {r['sent'] / 100:.1f} s of traffic; /health canary: {r['canary']}"); continue
            print(f"  {i + 1}: rolled back {r['from_challenger']:.3f} s after the first request routed to the challenger, "
                  f"{r['from_start']:.3f} s after the first request (/health polled every 50 ms said so "
                  f"{r['polled']:.2f} s after the first request); requests sent before it with a challenger key: {r['routed_before']}, "
                  f"challenger errors the service counted: {r['challenger_errors']:g}; reason: {r['reason']}")
            print(f"     callers: {r['sent']:,} requests, {r['stats']['errors']} errors, answered by versions {r['versions']}; "
                  f"p99 {ms(r['stats']['p99'])}")
        done = [r for r in rb if r['event'] is not None]
        if done:
            med = median([r['from_challenger'] for r in done])
            met3 = len(done) == len(rb) and max(r['from_challenger'] for r in done) <= 10 and all(r['stats']['errors'] == 0 for r in rb)
            print(f"  -> rolled back {med:.3f} s after the first challenger request (median of {len(done)}; "
                  f"{min(r['from_challenger'] for r in done):.3f}-{max(r['from_challenger'] for r in done):.3f} s), "
                  f"callers saw {sum(r['stats']['errors'] for r in rb)} errors: {'PASS' if met3 else 'FAIL'} "
                  f"(target: within one guard window, 10 s; 0 errors)")
        else:
            met3 = False; print("  -> FAIL: no rollback")

        note(f"hostile: {nh} bodies, ours" + ('' if a.skip_peer else ' and MLflow\'s'))
        hostile_report(start, serve, s, nh, a.skip_peer)

        print("\nstopped with SIGINT: " + '; '.join(f"{k}: exit {v.rc} in {v.stop_s:.1f} s" for k, v in rcs.items()))
        bad = [k for k, v in rcs.items() if v.rc != 0 and k.startswith('mlops-nb')]
        if bad: print(f"  <- mlops-nb serve should exit 0 on SIGINT: {', '.join(bad)}")
        for k, v in rcs.items():
            if v.problems: print(f"  {k}'s log: " + '; '.join(f"{n} x {x!r}" for x, n in v.problems.most_common(4)))
        leftovers = sorted(p.name for p in (root/'tmp').iterdir())
        print(f"temp files the servers left in their TMPDIR: {len(leftovers)}" + (f" ({', '.join(leftovers[:5])} ...)" if leftovers else ''))
    load1 = os.getloadavg()
    print(f"summary: load {'PASS' if met1 else 'FAIL'}, canary split {'PASS' if met2 else 'FAIL'}, rollback {'PASS' if met3 else 'FAIL'}; "
          f"load average at start {load0[0]:.2f} / {load0[1]:.2f}, at the end {load1[0]:.2f} / {load1[1]:.2f} (1 / 5 min); "
          f"whole run {time.perf_counter() - t_all:.0f} s")
    return 0


ATTACK = r'''
import json, sys, threading, httpx
url, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
MB = 2**20
def chunked():
    for _ in range(256): yield b'[' * (64 * 2**10)  # 16 MB, chunked
bodies = [b'{"rows": [' + b'1,' * (8 * MB) + b'1]}',  # 16 MB declared
          'chunked',
          b'[' * (int(1.95 * MB)) + b']' * (int(1.95 * MB)),  # 3.9 MB nested
          b'{"rows": [' + b'{"mean radius": 1e308},' * 170_000 + b'{"a": 1}]}',  # 3.9 MB of values the profiles cannot hold
          b'{"rows": [' + b'{"a": 1}, ' * 400_000 + b'{"a": 1}]}',  # 3.9 MB, too many rows
          b'{"rows": [{"mean radius": 1.0, ']  # truncated
out = []
def attack(i):
    with httpx.Client(base_url=url, timeout=60) as h:
        for k in range(i, n, 4):
            b = bodies[k % len(bodies)]
            try: out.append(str(h.post(path, content=chunked() if b == 'chunked' else b, headers={'content-type': 'application/json'}).status_code))
            except httpx.TransportError as e: out.append(type(e).__name__)
ts = [threading.Thread(target=attack, args=(i,)) for i in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps(out))
'''


def _kb(pid, key):
    try:
        for line in open(f'/proc/{pid}/status'):
            if line.startswith(key): return int(line.split()[1]) / 1024
    except OSError: return None


def hostile(srv, path, health, n):
    "Bodies from 4 clients in another process while /health is polled every 50 ms: statuses, peak RSS over the start, /health latencies."
    import httpx, psutil
    procs = [srv.p.pid] + [c.pid for c in psutil.Process(srv.p.pid).children(recursive=True)]
    for pid in procs:
        with open(f'/proc/{pid}/clear_refs', 'w') as f: f.write('5')
    base = {pid: _kb(pid, 'VmHWM') for pid in procs}
    att = subprocess.Popen([sys.executable, '-c', ATTACK, srv.url, path, str(n)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lat, t0 = [], time.perf_counter()
    with httpx.Client(base_url=srv.url, timeout=30) as h:
        while att.poll() is None:
            t = time.perf_counter()
            try: h.get(health); lat.append((time.perf_counter() - t) * 1000)
            except httpx.TransportError: lat.append(float('inf'))
            time.sleep(0.05)
    out, err = att.communicate(timeout=60)
    peaks = {pid: _kb(pid, 'VmHWM') for pid in procs}
    return dict(seconds=time.perf_counter() - t0, answers=Counter(json.loads(out)) if out.strip() else Counter({err[-200:]: 1}), lat=lat,
                server=(base[srv.p.pid], peaks[srv.p.pid]),
                others=[(base[p], peaks[p]) for p in procs[1:] if base.get(p) is not None and peaks.get(p) is not None])


def hostile_report(start, serve, s, n, skip_peer):
    print(f"\n4. Hostile bodies: {n} from 4 clients in another process (16 MB declared and chunked, 3.9 MB nested, of 1e308, "
          "of too many rows, truncated), /health polled every 50 ms")
    runs = [('mlops-nb serve (--max-body-mb 4)', serve, '/predict', '/health', {}, {})]
    if not skip_peer:
        runs.append(('mlflow models serve', [str(BIN/'mlflow'), 'models', 'serve', '-m', 'models:/churn/1', '--env-manager', 'local', '-w', '1',
                                             '-h', '127.0.0.1', '-p', '{port}'], '/invocations', '/ping', {'MLFLOW_TRACKING_URI': s.tracking_uri}, {'health': '/ping'}))
    for name, args, path, health, env, kw in runs:
        srv = start(args, env=env, **kw)
        try: r = hostile(srv, path, health, n)
        finally: srv.stop()
        lat = [x for x in r['lat'] if x != float('inf')]
        q = statistics.quantiles(lat, n=20) if len(lat) >= 2 else [float('nan')] * 19
        (b, p) = r['server']
        print(f"  {name}: {r['seconds']:.1f} s; answers {dict(r['answers'].most_common())}; server RSS {b:.0f} MB -> peak {p:.0f} MB "
              f"(+{p - b:.0f} MB)" + ''.join(f"; child process {cb:.0f} -> {cp:.0f} MB (+{cp - cb:.0f})" for cb, cp in r['others'] if cp - cb >= 1)
              + f"; {health}: {len(lat)} answers, median {median(lat):.1f} ms, p95 {q[-1]:.1f} ms, max {max(lat):.1f} ms"
              + (f", {len(r['lat']) - len(lat)} failed" if len(lat) < len(r['lat']) else ''))


def rollback(start, serve, load, root, rep):
    "One rollback: a fresh server, 100/s until 3 s after /health says rolled_back (at most the guard window + 2 s)."
    import httpx
    from mlops_nb.deploy.rollout import to_challenger
    srv = start(serve + ['--canary', '0.2', '--challenger', '3', '--guard-window', '10'])
    stop_file, seen, done = root/f'stop-{rep}', {}, threading.Event()
    def poll():
        while not done.is_set():
            try:
                h = httpx.get(srv.url + '/health', timeout=5).json()['canary']
                if h['status'] == 'rolled_back' and 'at' not in seen:
                    seen['at'] = time.time(); done.wait(3.0); stop_file.touch()  # 3 s more of traffic, then the generator stops
            except Exception: pass
            done.wait(0.05)
    th = threading.Thread(target=poll, daemon=True); th.start()
    try:
        res = load(srv, '/predict', 100.0, 1200, key_prefix=f'rb{rep}-', stop_file=stop_file)
        done.set(); th.join()
        health = httpx.get(srv.url + '/health', timeout=10).json()
        metrics = httpx.get(srv.url + '/metrics', timeout=10).text
    finally:
        done.set(); srv.stop()
    ev = next((e for e in health.get('events', []) if e['event'] == 'canary-rolled_back'), None)
    sends = [res['t0_epoch'] + i / 100.0 + res['late'][i] / 1000 for i in range(res['sent'])]
    routed = [i for i in range(res['sent']) if to_challenger(f'rb{rep}-{i}', 0.2, 'churn:3')]
    m = re.findall(r'mlops_nb_prediction_errors_total\{[^}]*variant="challenger"[^}]*\} (\S+)', metrics)
    out = dict(server=srv, sent=res['sent'], stats=stats(res, 5), versions=dict(Counter(str(v) for v in res['version'] if v is not None)),
               canary=health.get('canary'), event=ev, challenger_errors=sum(float(x) for x in m))
    if ev:
        out |= dict(from_start=ev['time'] - res['t0_epoch'], from_challenger=ev['time'] - sends[routed[0]],
                    polled=seen.get('at', float('nan')) - res['t0_epoch'], reason=health['canary']['reason'],
                    routed_before=sum(sends[i] < ev['time'] for i in routed))
    return out


if __name__ == '__main__':
    sys.exit(main())
