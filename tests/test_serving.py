"""The scoring service for real: two models trained by templates/train.ipynb and registered, `mlops-nb serve` started as
a process on a free port, HTTP requests as a client sends them. Canary routing, a failing challenger rolled back by its
guards, shadow mode, blue/green switching, a canary ramp promoted on success, and the inference profiles that
monitor.ipynb reads."""
import json, os, shutil, signal, socket, subprocess, textwrap, threading, time
from pathlib import Path

import pytest

from conftest import BIN, REPO, mlops_nb_cli

pytestmark = [pytest.mark.slow, pytest.mark.integration]
httpx = pytest.importorskip('httpx', reason='the serving tests need httpx: pip install -e ".[serve]"')

FAILING_MODEL = '''
import mlflow
from mlflow.pyfunc import PythonModel

class Failing(PythonModel):
    "A challenger that breaks on every call, as one whose feature service is down would."
    def predict(self, context, model_input, params=None):
        raise RuntimeError("feature service timed out")

mlflow.models.set_model(Failing())
'''


def _env(cache_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith(('MLOPS_NB_', 'MLFLOW_'))}
    return env | {'MLOPS_NB_CACHE_DIR': str(cache_dir), 'PYTHONUNBUFFERED': '1'}


@pytest.fixture(scope='module')
def trained(tmp_path_factory, cache_dir):
    """A project whose registry holds `churn` v1 (champion) and v2 (candidate), both trained by templates/train.ipynb,
    and v3, a challenger that raises on every call; and a batch of serving rows."""
    proj = tmp_path_factory.mktemp('serving')/'proj'; proj.mkdir()
    (proj/'pyproject.toml').write_text('[project]\nname = "serving-demo"\n')
    shutil.copy(REPO/'templates'/'train.ipynb', proj/'train.ipynb')
    env = _env(cache_dir)
    for seed in (1, 2):
        mlops_nb_cli('run', 'train.ipynb', '-p', 'n_trials', '2', '-p', 'seed', str(seed), '-p', 'model_name', 'churn',
                     '-p', 'reference_schema', 'schema.json', '--no-html', cwd=proj, env=env, timeout=300, check=True)
    mlops_nb_cli('promote', 'churn@1', '--to', 'champion', '--as', 'ci', cwd=proj, env=env, check=True)
    (proj/'failing_model.py').write_text(FAILING_MODEL)
    script = textwrap.dedent('''
        import mlflow, mlflow.pyfunc
        from mlflow.models import infer_signature
        from sklearn.datasets import load_breast_cancer
        from mlops_nb.core.config import resolve_settings
        from mlops_nb.store.client import open_client
        s = resolve_settings(); c = open_client(s)
        X = load_breast_cancer(as_frame=True).frame.drop(columns=['target'])
        mlflow.pyfunc.save_model('failing', python_model='failing_model.py', signature=infer_signature(X.head(5)))
        run = c.create_run(c.get_experiment_by_name('serving-demo').experiment_id, run_name='failing-challenger')
        c.log_artifacts(run.info.run_id, 'failing', 'model'); c.set_terminated(run.info.run_id)
        print(c.create_model_version('churn', run.info.artifact_uri + '/model', run_id=run.info.run_id).version)
        X.sample(400, random_state=0).to_csv('batch.csv', index=False)
    ''')
    r = subprocess.run([str(BIN/'python'), '-c', script], cwd=proj, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith('3'), r.stdout + r.stderr
    return proj, env


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


class Service:
    "`mlops-nb serve ...` as a process; stopped with Ctrl-C (SIGINT), as a user stops it."
    def __init__(self, trained, *args):
        self.proj, env = trained
        self.port = _free_port(); self.url = f'http://127.0.0.1:{self.port}'
        self.p = subprocess.Popen([str(BIN/'mlops-nb'), 'serve', 'churn', '--port', str(self.port), *args], cwd=self.proj, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.http = httpx.Client(base_url=self.url, timeout=30)
        t0 = time.time()
        while time.time() - t0 < 90:
            if self.p.poll() is not None: raise AssertionError(f"serve exited {self.p.returncode}:\n{self.p.stdout.read()}")
            try:
                if self.http.get('/health').status_code == 200: return
            except httpx.TransportError: time.sleep(0.2)
        self.stop(); raise AssertionError("serve did not answer /health within 90 s")

    def predict(self, rows, key=None):
        return self.http.post('/predict', json={'rows': rows}, headers={'X-Request-Key': key} if key else {})

    def stop(self):
        self.http.close()
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try: self.p.wait(60)
            except subprocess.TimeoutExpired: self.p.kill(); self.p.wait()
        self.output = self.p.stdout.read()
        return self.p.returncode


@pytest.fixture
def rows():
    import pandas as pd
    from sklearn.datasets import load_breast_cancer
    X = load_breast_cancer(as_frame=True).frame.drop(columns=['target'])
    return X.sample(300, random_state=1).to_dict(orient='records')


def _model(trained, version):
    "The registered version, loaded as a user would, for the expected predictions."
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.deploy.serving import load_version
    return load_version('churn', version, resolve_settings(project_dir=trained[0], env={'MLOPS_NB_CACHE_DIR': trained[1]['MLOPS_NB_CACHE_DIR']}))


def test_the_service_answers_with_the_champion_and_refuses_bad_requests_naming_the_field(trained, rows):
    import pandas as pd
    svc = Service(trained, '--max-body-mb', '16')  # 10,001 rows (7 MB) reach the row limit, not the body limit
    try:
        r = svc.predict(rows[:5])
        assert r.status_code == 200 and r.json()['version'] == 1 and r.json()['variant'] == 'champion'
        assert r.json()['predictions'] == list(_model(trained, 1).predict(pd.DataFrame(rows[:5])).tolist())
        for i in range(0, 200, 10): assert svc.predict(rows[i:i + 10]).status_code == 200
        bad = {**rows[0]}; del bad['mean radius']
        cases = [({'rows': [bad]}, 422, 'mean radius', 'Field `mean radius` is missing in row 0.'),
                 ({'rows': [rows[0], {**rows[1], 'worst area': 'huge'}]}, 422, 'worst area', 'Field `worst area` in row 1 is "huge", not a finite double.'),
                 ({'rows': [{**rows[0], 'mean radus': 1.0}]}, 422, 'mean radus', 'Unknown field `mean radus` in row 0. Did you mean `mean radius`?'),
                 ({'rows': []}, 422, 'rows', '`rows` must be a non-empty list of objects.'),
                 ({'rows': [rows[0]] * 10_001}, 413, 'rows', '10,001 rows in one request; the limit is 10,000.')]
        for body, status, field, error in cases:
            r = svc.http.post('/predict', json=body)
            assert (r.status_code, r.json()['field'], r.json()['error']) == (status, field, error), r.text
            assert r.json()['fix']
        r = svc.http.post('/predict', content=b'{"rows": [', headers={'content-type': 'application/json'})
        assert r.status_code == 400 and 'not JSON' in r.json()['error']
        health = svc.http.get('/health').json()
        assert health['status'] == 'ok' and health['live'] == {'version': 1, 'label': 'champion'} and 'mean radius' in health['signature']
        metrics = svc.http.get('/metrics').text
        assert 'mlops_nb_requests_total{model="churn",version="1",variant="champion",code="200"} 21' in metrics
        assert 'mlops_nb_requests_total{model="churn",version="1",variant="champion",code="422"} 4' in metrics
        assert 'mlops_nb_requests_total{model="churn",version="1",variant="champion",code="400"} 1' in metrics
        assert 'mlops_nb_request_duration_seconds_count{model="churn",version="1",variant="champion"} 27' in metrics
        assert 'mlops_nb_rows_predicted_total{model="churn",version="1",variant="champion"} 205' in metrics
        assert '# TYPE mlops_nb_request_duration_seconds histogram' in metrics and '5xx' not in metrics and 'code="500"' not in metrics
    finally: code = svc.stop()
    assert code == 0, svc.output
    # What it answered is kept as profiles of inputs and outputs, and the monitoring template reads them.
    folder = trained[0]/'.mlops'/'serving'/'churn'/'v1'
    assert list((folder/'inputs').glob('*.profile.json')) and list((folder/'outputs').glob('*.profile.json'))
    from mlops_nb.monitoring.drift import drift
    rep = drift(pd.DataFrame(rows), folder/'inputs', log=False)
    assert rep.current.rows == 205 and rep.schema_changes == []
    shutil.copy(REPO/'templates'/'monitor.ipynb', trained[0]/'monitor.ipynb')
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.store.client import open_client
    c = open_client(resolve_settings(project_dir=trained[0], env={'MLOPS_NB_CACHE_DIR': trained[1]['MLOPS_NB_CACHE_DIR']}))
    train_run = c.get_model_version('churn', '1').run_id
    r = mlops_nb_cli('run', 'monitor.ipynb', '-p', 'reference', train_run, '-p', 'batch_path', str(folder/'inputs'), '--no-html',
                     cwd=trained[0], env=trained[1], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    run = c.search_runs([e.experiment_id for e in c.search_experiments()], f"params.reference = '{train_run}'")[0]
    assert run.data.tags['mlops_nb.drift.verdict'] in ('stable', 'minor', 'drift') and run.data.metrics['drift/schema_changes'] == 0


def test_canary_routes_each_key_to_the_same_variant_by_its_hash(trained, rows):
    import pandas as pd
    from mlops_nb.deploy.rollout import to_challenger
    svc = Service(trained, '--canary', '0.3', '--challenger', '2')
    try:
        seen = {}
        for i in range(300):
            r = svc.predict([rows[i]], key=f'user-{i}'); assert r.status_code == 200, r.text
            seen[f'user-{i}'] = r.json()
        expected = {k: 'challenger' if to_challenger(k, 0.3, 'churn:2') else 'champion' for k in seen}
        assert {k: v['variant'] for k, v in seen.items()} == expected
        assert 60 <= sum(v == 'challenger' for v in expected.values()) <= 120
        assert all(v['version'] == (2 if v['variant'] == 'challenger' else 1) for v in seen.values())
        for i in range(0, 300, 15):  # the same key, the same variant, every time
            assert svc.predict([rows[i]], key=f'user-{i}').json()['variant'] == seen[f'user-{i}']['variant']
        challenger_rows = [rows[i] for i in range(300) if expected[f'user-{i}'] == 'challenger']
        assert [seen[f'user-{i}']['predictions'][0] for i in range(300) if expected[f'user-{i}'] == 'challenger'] == \
            _model(trained, 2).predict(pd.DataFrame(challenger_rows)).tolist()
        h = svc.http.get('/health').json()['canary']
        assert h['status'] == 'running' and h['fraction'] == 0.3 and h['challenger'] == 2
        assert 'variant="challenger",code="200"}' in svc.http.get('/metrics').text
    finally: assert svc.stop() == 0, svc.output


def test_a_failing_challenger_is_rolled_back_within_one_guard_window_and_callers_never_see_its_errors(trained, rows):
    from mlops_nb.models.audit import history
    from mlops_nb.core.config import resolve_settings
    svc = Service(trained, '--canary', '0.5', '--challenger', '3', '--guard-window', '5')
    try:
        t0, statuses = time.time(), []
        while time.time() - t0 < 5:
            statuses.append(svc.predict([rows[len(statuses) % 300]], key=f'k{len(statuses)}').status_code)
            if svc.http.get('/health').json()['canary']['status'] == 'rolled_back': break
        rolled = time.time() - t0
        h = svc.http.get('/health').json()['canary']
        assert h['status'] == 'rolled_back' and h['fraction'] == 0.0 and rolled <= 5, (rolled, h)
        assert h['reason'].startswith('error rate') and set(statuses) == {200}
        after = [svc.predict([rows[i]], key=f'k{i}').json() for i in range(40)]
        assert {a['variant'] for a in after} == {'champion'} and {a['version'] for a in after} == {1}
        metrics = svc.http.get('/metrics').text
        assert 'mlops_nb_canary_rollbacks_total{model="churn",version="3"} 1' in metrics
        assert 'mlops_nb_prediction_errors_total{model="churn",version="3",variant="challenger"}' in metrics
    finally: assert svc.stop() == 0, svc.output
    assert 'canary v3: rolled back: error rate' in svc.output
    recs = history('churn', settings=resolve_settings(project_dir=trained[0], env={'MLOPS_NB_CACHE_DIR': trained[1]['MLOPS_NB_CACHE_DIR']}))
    assert any(r.action == 'canary-rolled-back' and r.to_version == 3 and r.from_version == 1 for r in recs)


def test_shadow_runs_on_every_request_but_never_answers(trained, rows):
    svc = Service(trained, '--shadow', '2')
    try:
        answers = [svc.predict(rows[i:i + 2]).json() for i in range(0, 100, 2)]
        assert {a['version'] for a in answers} == {1} and {a['variant'] for a in answers} == {'champion'}
        for _ in range(50):
            sh = svc.http.get('/health').json()['shadow']
            if sh['requests'] == 50: break
            time.sleep(0.1)
        assert sh['version'] == 2 and sh['requests'] == 50 and sh['rows'] == 100 and sh['errors'] == 0
        assert 0.5 <= sh['agreement'] <= 1.0 and sh['live_p95_ms'] > 0 and sh['shadow_p95_ms'] > 0 and 'prediction_drift' in sh
        assert 'mlops_nb_shadow_requests_total{model="churn",version="2",variant="shadow"} 50' in svc.http.get('/metrics').text
    finally: assert svc.stop() == 0, svc.output
    # Before any traffic: the same comparison on a batch, as a tracked run.
    r = mlops_nb_cli('shadow', 'churn', '--challenger', '2', '--data', 'batch.csv', '--json', cwd=trained[0], env=trained[1], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert (out['live_version'], out['challenger_version'], out['rows']) == (1, 2, 400) and 0.5 <= out['agreement'] <= 1
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.store.client import open_client
    run = open_client(resolve_settings(project_dir=trained[0], env={'MLOPS_NB_CACHE_DIR': trained[1]['MLOPS_NB_CACHE_DIR']})).get_run(out['run_id'])
    assert run.data.tags['mlops_nb.shadow'] == 'churn v1 vs v2' and run.data.metrics['shadow/agreement'] == out['agreement']


def test_blue_green_switches_all_traffic_at_once_and_back(trained, rows):
    svc = Service(trained, '--standby', 'candidate')
    try:
        assert svc.predict(rows[:1]).json()['version'] == 1
        seen, errors, stop = [], [], threading.Event()
        def traffic():
            with httpx.Client(base_url=svc.url, timeout=30) as h:
                while not stop.is_set():
                    r = h.post('/predict', json={'rows': rows[:1]})
                    (seen if r.status_code == 200 else errors).append(r.json().get('version', r.text))
        t = threading.Thread(target=traffic); t.start()
        assert svc.http.post('/admin/switch', json={'as': 'oncall'}).status_code == 401  # the admin token, from its 0600 file
        auth = {'Authorization': 'Bearer ' + (svc.proj/'.mlops'/'serving'/'churn'/'admin-token').read_text().strip()}
        for i in range(6):
            r = svc.http.post('/admin/switch', json={'as': 'oncall', 'reason': f'switch {i}'}, headers=auth)
            assert r.status_code == 200 and r.json()['live']['version'] == (2 if i % 2 == 0 else 1), r.text
            assert {svc.predict(rows[:1]).json()['version'] for _ in range(5)} == {r.json()['live']['version']}
        stop.set(); t.join()
        assert errors == [] and set(seen) <= {1, 2} and len(seen) > 10
    finally: assert svc.stop() == 0, svc.output


def test_a_canary_that_passes_its_ramp_is_promoted(trained, rows):
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.store.client import open_client
    s = resolve_settings(project_dir=trained[0], env={'MLOPS_NB_CACHE_DIR': trained[1]['MLOPS_NB_CACHE_DIR']})
    svc = Service(trained, '--canary', '0.5', '--challenger', '2', '--ramp', '1', '--guard-window', '1.5', '--promote-on-success')
    try:
        t0 = time.time()
        while time.time() - t0 < 30:
            for i in range(30): assert svc.predict([rows[i]], key=f'ramp-{time.time()}-{i}').status_code == 200
            if svc.http.get('/health').json().get('canary') is None: break  # promoted: the challenger is the live version
        health = svc.http.get('/health').json()
        assert health['live']['version'] == 2, json.dumps(health)
        assert {svc.predict([rows[0]], key=f'x{i}').json()['version'] for i in range(20)} == {2}
    finally: assert svc.stop() == 0, svc.output
    assert int(open_client(s).get_registered_model('churn').aliases['champion']) == 2
    mlops_nb_cli('rollback', 'churn', '--alias', 'champion', '--reason', 'test cleanup', cwd=trained[0], env=trained[1], check=True)
