"""The scoring service under load on loopback, against MLflow's own scoring server; the canary split; a rollback.

    python benchmarks/bench_serving.py              # 60 s load per server, 10,000 canary keys
    python benchmarks/bench_serving.py --quick      # 15 s load, 2,000 canary keys

Setup     a temporary project: LightGBM (100 trees) trained on scikit-learn's breast-cancer data and registered as
          `churn` v1 (promoted to `champion`), a second LightGBM as v2, and v3, a pyfunc that raises on every call (a
          challenger whose feature service is down).
Load      an open-loop generator in its own process (asyncio + httpx): one single-row request every 5 ms (200/s), each
          scheduled in advance, so a slow server cannot slow the generator down; latency counts from the scheduled
          send time (queueing included: no coordinated omission). Errors: any status but 200, or no answer in 10 s.
          Ours: `mlops-nb serve churn` (POST /predict, inputs checked against the signature, metrics, inference
          profiles). The peer: `mlflow models serve -m models:/churn/1 --env-manager local` (POST /invocations), the
          same model and rows. Targets: 200 requests/s sustained with 0 errors; p99 reported, with the ratio to MLflow's.
Canary    `mlops-nb serve churn --canary 0.05 --challenger 2`; one request per distinct key; the challenger's share from
          the answers' `variant`. Target: within +-1 percentage point of 5 %.
Rollback  `mlops-nb serve churn --canary 0.2 --challenger 3 --guard-window 10` under 100 requests/s; the time from the
          first request to /health saying `rolled_back`. Target: within one guard window (10 s), 0 errors to callers.
The load generator, the server and MLflow share this machine's cores (2 here): figures are for loopback on one box.
"""
import argparse, json, os, signal, socket, subprocess, sys, tempfile, textwrap, threading, time
from pathlib import Path

BIN = Path(sys.executable).parent

GENERATOR = r'''
import asyncio, json, sys, time
import httpx
cfg = json.loads(sys.argv[1])
rows = json.load(open(cfg['rows']))
async def main():
    lat, errors, variants, versions, kinds = [], 0, {}, {}, {}
    limits = httpx.Limits(max_connections=cfg.get('connections', 64), max_keepalive_connections=cfg.get('connections', 64))
    async with httpx.AsyncClient(base_url=cfg['url'], timeout=10, limits=limits) as client:
        async def one(i, due):
            nonlocal errors
            row = rows[i % len(rows)]
            body = {'dataframe_records': [row]} if cfg['peer'] else {'rows': [row]}
            try:
                r = await client.post(cfg['path'], json=body, headers={'X-Request-Key': f"key-{i}"})
                ok = r.status_code == 200
                if not ok: kinds[str(r.status_code)] = kinds.get(str(r.status_code), 0) + 1
                if ok and not cfg['peer']:
                    j = r.json(); variants[j['variant']] = variants.get(j['variant'], 0) + 1; versions[j['version']] = versions.get(j['version'], 0) + 1
            except Exception as e:
                ok = False; kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
            lat.append((time.perf_counter() - due) * 1000)
            if not ok: errors += 1
        n, t0 = cfg['requests'], time.perf_counter() + 0.2
        tasks = []
        for i in range(n):
            due = t0 + i / cfg['rate']
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        took = time.perf_counter() - t0
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    print(json.dumps(dict(requests=n, errors=errors, seconds=took, rate=n / took, p50=q(0.50), p95=q(0.95), p99=q(0.99),
                          max=lat[-1], variants=variants, versions=versions, error_kinds=kinds)))
asyncio.run(main())
'''

FAILING_MODEL = '''
import mlflow
from mlflow.pyfunc import PythonModel

class Failing(PythonModel):
    def predict(self, context, model_input, params=None):
        raise RuntimeError("feature service timed out")

mlflow.models.set_model(Failing())
'''


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
    from mlops_nb.config import resolve_settings
    from mlops_nb.store import open_client
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
    c.create_model_version('churn', run.info.artifact_uri + '/model', run_id=run.info.run_id)
    mn.promote('churn@1', 'champion', settings=s, as_='bench')
    from mlops_nb import tracking
    tracking.sync(60)
    (proj/'rows.json').write_text(json.dumps(X.sample(500, random_state=0).to_dict(orient='records')))
    return s


class Server:
    def __init__(self, args, proj, env, health='/health'):
        self.port = free_port()
        self.p = subprocess.Popen([a.replace('{port}', str(self.port)) for a in args], cwd=proj, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        import httpx
        self.url, t0 = f'http://127.0.0.1:{self.port}', time.time()
        while time.time() - t0 < 180:
            if self.p.poll() is not None: raise RuntimeError(f"{args[0]} exited {self.p.returncode}: {self.p.stdout.read()[-2000:]}")
            try:
                if httpx.get(self.url + health, timeout=2).status_code == 200: return
            except httpx.TransportError: pass
            time.sleep(0.3)
        self.stop(); raise RuntimeError(f"{' '.join(args)} did not come up in 180 s")

    def stop(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGINT)
            try: self.p.wait(60)
            except subprocess.TimeoutExpired: os.killpg(self.p.pid, signal.SIGKILL); self.p.wait()
        return self.p.stdout.read()


def load(url, path, proj, rate, requests, peer=False):
    cfg = dict(url=url, path=path, rows=str(proj/'rows.json'), rate=rate, requests=requests, peer=peer)
    r = subprocess.run([sys.executable, '-c', GENERATOR, json.dumps(cfg)], capture_output=True, text=True, timeout=requests/rate + 600)
    if r.returncode: raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def line(name, m):
    return (f"  {name:<22} {m['rate']:6.1f} req/s  errors {m['errors']:>4}  p50 {m['p50']:6.2f} ms  p95 {m['p95']:6.2f} ms  "
            f"p99 {m['p99']:7.2f} ms  max {m['max']:7.1f} ms" + (f"  ({', '.join(f'{k}: {v}' for k, v in m['error_kinds'].items())})" if m['error_kinds'] else ''))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help="15 s of load per server, 2,000 canary keys")
    ap.add_argument('--seconds', type=float, default=None, help="Seconds of load per server [60; --quick 15]")
    ap.add_argument('--rate', type=float, default=200.0, help="Requests per second [200]")
    ap.add_argument('--keys', type=int, default=None, help="Canary keys [10000; --quick 2000]")
    a = ap.parse_args()
    seconds, keys = a.seconds or (15 if a.quick else 60), a.keys or (2000 if a.quick else 10_000)
    env = {k: v for k, v in os.environ.items() if not k.startswith(('MLOPS_NB_', 'MLFLOW_'))} | {'MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR': 'false',
                                                                                           'PATH': f"{BIN}:{os.environ['PATH']}"}
    with tempfile.TemporaryDirectory(prefix='bench-serving-') as d:
        proj = Path(d)/'proj'; proj.mkdir()
        print("setting up: two LightGBM versions and a failing one in a fresh store ...", flush=True)
        s = setup(proj)
        serve = [str(BIN/'mlops-nb'), 'serve', 'churn', '--port', '{port}']
        n = int(seconds * a.rate)

        print(f"\nLoad: {a.rate:g} single-row requests/s for {seconds:g} s ({n:,} requests), open loop, one process each side")
        low, n_low = 50.0, int(min(seconds, 15) * 50)
        srv = Server(serve, proj, env)
        try:
            load(srv.url, '/predict', proj, 50.0, 200)  # warm-up, not counted (both servers get one)
            ours, ours_low = load(srv.url, '/predict', proj, a.rate, n), load(srv.url, '/predict', proj, low, n_low)
        finally: srv.stop()
        peer = peer_low = None
        try:
            srv = Server([str(BIN/'mlflow'), 'models', 'serve', '-m', 'models:/churn/1', '--env-manager', 'local', '-w', '1',
                          '-h', '127.0.0.1', '-p', '{port}'], proj, env | {'MLFLOW_TRACKING_URI': s.tracking_uri}, health='/ping')
            try:
                load(srv.url, '/invocations', proj, 50.0, 200, peer=True)
                peer_low = load(srv.url, '/invocations', proj, low, n_low, peer=True)
                peer = load(srv.url, '/invocations', proj, a.rate, int(min(seconds, 15) * a.rate), peer=True)  # it falls behind: 15 s is enough to see
            finally: srv.stop()
        except Exception as e: print(f"  MLflow's scoring server could not be measured: {str(e)[:300]}")
        print(line('mlops-nb serve', ours))
        if peer: print(line(f'mlflow serve, {min(seconds, 15):g} s', peer))
        print(f"  and at {low:g}/s, a load MLflow's server (one worker) sustains here:")
        print(line('mlops-nb serve', ours_low))
        if peer_low:
            print(line('mlflow models serve', peer_low))
            print(f"  at {low:g}/s, ours / MLflow's: p50 {ours_low['p50']/peer_low['p50']:.2f}x, p99 {ours_low['p99']/peer_low['p99']:.2f}x")
        ok = ours['errors'] == 0 and ours['rate'] >= 0.98 * a.rate
        print(f"  sustained {a.rate:g}/s with 0 errors: {'PASS' if ok else 'FAIL'}" +
              (f"; ours / MLflow's server: p50 {ours['p50']/peer['p50']:.3g}x, p99 {ours['p99']/peer['p99']:.3g}x, "
               f"rate {ours['rate']/peer['rate']:.2f}x" if peer else ''))

        print(f"\nCanary split: --canary 0.05 --challenger 2, {keys:,} requests with distinct keys")
        srv = Server(serve + ['--canary', '0.05', '--challenger', '2'], proj, env)
        try: can = load(srv.url, '/predict', proj, a.rate, keys)
        finally: srv.stop()
        share = can['variants'].get('challenger', 0) / max(1, keys - can['errors'])
        from mlops_nb.deploy import to_challenger
        expected = sum(to_challenger(f'key-{i}', 0.05, 'churn:2') for i in range(keys)) / keys
        sd = (0.05 * 0.95 / keys) ** 0.5
        print(f"  challenger share {share:.2%} (target 5.00 % +- 1 point over 10,000 keys; sampling sd here {sd:.2%}): "
              f"{'PASS' if abs(share - 0.05) <= 0.01 else 'FAIL'}; the hash assigns {expected:.2%} of these keys: "
              f"{'the service routed every key as assigned' if abs(share - expected) < 1e-9 else 'MISMATCH'}; errors {can['errors']}, p99 {can['p99']:.2f} ms")

        print("\nRollback: --canary 0.2 --challenger 3 (raises on every call) --guard-window 10, 100 requests/s")
        srv = Server(serve + ['--canary', '0.2', '--challenger', '3', '--guard-window', '10'], proj, env)
        import httpx
        seen, t_start = {}, [None]
        def poll():
            while 'rolled' not in seen and time.time() - (t_start[0] or time.time()) < 30:
                try:
                    h = httpx.get(srv.url + '/health', timeout=5).json()['canary']
                    if h['status'] == 'rolled_back': seen['rolled'] = time.time(); seen['reason'] = h['reason']
                except Exception: pass
                time.sleep(0.05)
        try:
            t_start[0] = time.time() + 0.2  # the generator's first request
            th = threading.Thread(target=poll); th.start()
            rb = load(srv.url, '/predict', proj, 100.0, 1500)
            th.join()
        finally: out = srv.stop()
        took = seen['rolled'] - t_start[0] if 'rolled' in seen else None
        print(f"  rolled back after {took:.2f} s" if took is not None else "  not rolled back", end='')
        print(f" ({seen.get('reason', '')}); target within one guard window (10 s): {'PASS' if took is not None and took <= 10 else 'FAIL'}")
        print(f"  callers: {rb['requests']:,} requests, {rb['errors']} errors, versions answering {rb['versions']}")


if __name__ == '__main__':
    main()
