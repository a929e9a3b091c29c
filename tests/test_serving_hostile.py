"""The scoring service under hostile input, as a process on loopback: each case asserts the status, that the message
names the bad value or the limit, that no traceback reaches the client, and that the service keeps serving; the admin
token; and a load of oversized and malformed bodies with the server's peak RSS bounded and /health answering in time."""
import json, os, statistics, subprocess, textwrap, threading, time

import pytest

from conftest import BIN
from test_serving import Service, _env

pytestmark = [pytest.mark.slow, pytest.mark.integration]
httpx = pytest.importorskip('httpx', reason='the serving tests need httpx: pip install -e ".[serve]"')

TRAIN = textwrap.dedent('''
    import mlops_nb as mn
    from mlops_nb.core.config import resolve_settings
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    s = resolve_settings()
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    for C in (1.0, 0.01):
        with mn.track('demo', settings=s, system_metrics=None):
            mn.log_model(LogisticRegression(C=C, max_iter=5000).fit(X, y), flavor='sklearn', input_example=X.head(2))
            mn.register_candidate('churn')
    mn.promote('churn@1', 'champion', settings=s, as_='setup')
''')
MB = 2**20


@pytest.fixture(scope='module')
def small(tmp_path_factory, cache_dir):
    "`churn` v1 (champion) and v2 (candidate): two small logistic regressions, trained in a few seconds."
    proj = tmp_path_factory.mktemp('hostile')/'proj'; proj.mkdir()
    (proj/'pyproject.toml').write_text('[project]\nname = "hostile-demo"\n')
    env = _env(cache_dir)
    r = subprocess.run([str(BIN/'python'), '-c', TRAIN], cwd=proj, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return proj, env


@pytest.fixture(scope='module')
def svc(small):
    s = Service(small, '--standby', 'candidate', '--max-body-mb', '1')
    yield s
    assert s.stop() == 0, s.output


@pytest.fixture(scope='module')
def row():
    from sklearn.datasets import load_breast_cancer
    return load_breast_cancer(as_frame=True).frame.drop(columns=['target']).iloc[0].to_dict()


def _token(small): return (small[0]/'.mlops'/'serving'/'churn'/'admin-token').read_text().strip()


def _refused(svc, r, status, *named):
    "The answer is `status`, a JSON error naming each of `named`, no traceback; and the service still answers."
    assert r.status_code == status, (r.status_code, r.text[:500])
    body = r.json()
    assert all(n in body['error'] + body.get('fix', '') + str(body.get('field', '')) for n in named), body
    assert 'Traceback' not in r.text and 'File "' not in r.text
    assert svc.http.get('/health').status_code == 200
    return body


def test_hostile_bodies_get_a_4xx_naming_the_value_or_limit_and_the_service_keeps_serving(svc, row):
    post = lambda **kw: svc.http.post('/predict', headers={'content-type': 'application/json'}, **kw)
    body = _refused(svc, post(content=b'{"rows": [' + b'1,' * MB + b'1]}'), 413, 'the limit is 1.0 MB', '--max-body-mb')
    assert body['error'].startswith('The body is 2.0 MB')  # declared: refused before it is read
    def chunks():
        for _ in range(48): yield b' ' * (64 * 2**10)
    _refused(svc, post(content=chunks()), 413, 'over 1.0 MB', '--max-body-mb')  # chunked: cut at the limit
    _refused(svc, post(content=b'[' * 100_000 + b']' * 100_000), 400, 'nests 100,000 levels deep; the limit is 32')
    _refused(svc, post(content=b'{"rows": ['), 400, 'not JSON')
    _refused(svc, post(content=b'\xff\xfe\x00garbage'), 400, 'not JSON')
    for value, why in (('1e308', 'larger than 1e+50'), ('NaN', 'not finite'), ('-Infinity', 'not finite'), ('1e400', 'not finite'),
                       ('9' * 400, 'larger than 1e+50')):
        text = json.dumps({'rows': [row]}).replace(json.dumps(row['mean radius']), value, 1)
        b = _refused(svc, post(content=text.encode()), 422, 'mean radius', why)
        assert (b['field'], b['row']) == ('mean radius', 0)
    cols, vals = list(row), list(row.values())
    b = _refused(svc, svc.http.post('/predict', json={'dataframe_split': {'columns': cols, 'data': [vals, vals + [1.0]]}}), 422, 'Row 1', '31 values for 30 columns')
    assert b['row'] == 1
    _refused(svc, svc.http.post('/predict', json={'dataframe_split': {'columns': cols, 'data': [vals[:-1]]}}), 422, 'Row 0', '29 values for 30 columns')
    _refused(svc, svc.http.post('/predict', json=['a', 'b']), 422, 'Row 0 is a JSON str')
    _refused(svc, svc.http.post('/predict', json={'rows': [{**row, 'mean radius': [[[1]]]}]}), 422, 'mean radius')
    r = svc.http.post('/predict', json={'rows': [row]})
    assert r.status_code == 200 and r.json()['version'] == 1
    # Nothing refused reached the inference profiles: what they hold stays finite.
    metrics = svc.http.get('/metrics').text
    assert 'mlops_nb_requests_total{model="churn",version="1",variant="champion",code="500"}' not in metrics


def test_admin_endpoints_need_the_token_and_the_audit_names_the_server_side_identity(svc, small, row):
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.models.audit import history, verified_identity
    from mlops_nb.store.client import open_client
    r = svc.http.post('/admin/switch', json={'as': 'mallory'})
    b = _refused(svc, r, 401, 'admin token', 'admin-token')
    assert r.headers['www-authenticate'] == 'Bearer' and _token(small) not in r.text
    _refused(svc, svc.http.post('/admin/switch', json={}, headers={'Authorization': 'Bearer ' + 'x' * 43}), 401, 'the one sent is wrong')
    assert oct((small[0]/'.mlops'/'serving'/'churn'/'admin-token').stat().st_mode & 0o777) == '0o600'
    auth = {'Authorization': f'Bearer {_token(small)}'}
    _refused(svc, svc.http.post('/admin/switch', json={'as': 'x' * 2000}, headers=auth), 422, '`as` is 2,000 characters long', 'the limit is 200')
    assert svc.predict([row]).json()['version'] == 1  # refused: nothing switched
    forged = 'ok\n2020-01-01 00:00:00  promote   champion    v1 -> v9  root'
    r = svc.http.post('/admin/switch', json={'as': 'oncall', 'reason': forged}, headers=auth)
    assert r.status_code == 200 and r.json()['live']['version'] == 2, r.text
    s = resolve_settings(project_dir=small[0], env={'MLOPS_NB_CACHE_DIR': small[1]['MLOPS_NB_CACHE_DIR']})
    assert int(open_client(s).get_registered_model('churn').aliases['champion']) == 2  # the registry says what is served
    assert svc.predict([row]).json()['version'] == 2
    rec = history('churn', settings=s)[-1]
    assert (rec.action, rec.who, rec.identity, rec.to_version) == ('promote', 'oncall', verified_identity(s), 2)
    out = subprocess.run([str(BIN/'mlops-nb'), 'history', 'churn'], cwd=small[0], env=small[1], capture_output=True, text=True, timeout=60).stdout
    assert len([l for l in out.splitlines() if 'v1 -> v9' in l]) == 1 and '(ok\\n2020-01-01' in out  # escaped: no forged line
    r = svc.http.post('/admin/switch', json={}, headers=auth)  # and back: a rollback of the alias
    assert r.status_code == 200 and r.json()['live']['version'] == 1
    assert int(open_client(s).get_registered_model('churn').aliases['champion']) == 1 and history('churn', settings=s)[-1].action == 'rollback'


def _rss_mb(pid, key):
    for line in open(f'/proc/{pid}/status'):
        if line.startswith(key): return int(line.split()[1]) / 1024


RSS_BOUND_MB = 100  # peak RSS over the server's resident size before the load, with --max-body-mb 1 (measured: benchmarks/README.md)

ATTACK = textwrap.dedent('''
    import sys, threading, httpx
    url, MB = sys.argv[1], 2**20
    bad = [b'{"rows": [' + b'1,' * (3 * MB) + b'1]}',  # 6 MB declared
           b'[' * 400_000 + b']' * 400_000,  # 800 KB of nesting
           b'{"rows": [' + b'{"a": 1e308},' * 60_000 + b'{"a": 1}]}',  # 780 KB of values the profiles cannot hold
           b'{"rows": [' + b'{"a": 1}, ' * 80_000 + b'{"a": 1}]}',  # 800 KB, too many rows
           b'{"rows": [' * 1000]
    def chunked():
        for _ in range(64): yield b'[' * (64 * 2**10)  # 4 MB, chunked
    out = []
    def attack(i):
        with httpx.Client(base_url=url, timeout=30) as h:
            for n in range(25):
                try: out.append(str(h.post('/predict', content=chunked() if n % 5 == 4 else bad[(i + n) % len(bad)]).status_code))
                except httpx.TransportError as e: out.append(type(e).__name__)  # the server closing an oversized upload
    ts = [threading.Thread(target=attack, args=(i,)) for i in range(4)]
    for t in ts: t.start()
    for t in ts: t.join()
    print(' '.join(out))
''')


def test_a_load_of_oversized_and_malformed_bodies_keeps_memory_bounded_and_health_fast(svc, row):
    "4 clients in another process send 100 bodies (oversized, chunked, deeply nested, overflowing, too many rows) while "
    "/health is polled every 50 ms: every answer is a 4xx, the server's peak RSS stays bounded, /health answers in time."
    with open(f'/proc/{svc.p.pid}/clear_refs', 'w') as f: f.write('5')  # reset the peak (VmHWM) to the resident size now
    base = _rss_mb(svc.p.pid, 'VmHWM')
    attack = subprocess.Popen([str(BIN/'python'), '-c', ATTACK, svc.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lat = []
    with httpx.Client(base_url=svc.url, timeout=30) as h:
        while attack.poll() is None and len(lat) < 2000:
            t = time.perf_counter(); r = h.get('/health'); lat.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200
            time.sleep(0.05)  # the polling interval, not a synchronisation
    out, err = attack.communicate(timeout=120)
    peak = _rss_mb(svc.p.pid, 'VmHWM')
    answers = out.split()
    assert attack.returncode == 0 and len(answers) == 100, err[-2000:]
    assert set(a for a in answers if a.isdigit()) <= {'400', '413', '422'} and sum(a.isdigit() for a in answers) >= 80, answers
    good = json.dumps({'rows': [row] * 50}).encode()
    assert svc.http.post('/predict', content=good, headers={'content-type': 'application/json'}).status_code == 200
    p95 = statistics.quantiles(lat, n=20)[-1]
    print(f"\nload: {sum(a.isdigit() for a in answers)} answers, {sum(not a.isdigit() for a in answers)} cut; RSS before {base:.0f} MB, "
          f"peak {peak:.0f} MB (+{peak - base:.0f}); /health {len(lat)} calls, median {statistics.median(lat):.1f} ms, p95 {p95:.1f} ms, max {max(lat):.1f} ms")
    assert peak - base < RSS_BOUND_MB, (base, peak)
    assert len(lat) >= 10 and p95 < 100, sorted(lat)[-5:]


def test_a_client_choosing_inputs_per_canary_key_cannot_force_a_rollback(small):
    "Challenger keys get rows of one class, champion keys rows of the other: compared across requests the predictions "
    "differ completely; the guards compare both models on the same (challenger) inputs, so the canary carries on."
    from sklearn.datasets import load_breast_cancer
    from mlops_nb.deploy.rollout import to_challenger
    f = load_breast_cancer(as_frame=True).frame
    ones, zeros = [f[f.target == t].drop(columns=['target']).to_dict(orient='records') for t in (1, 0)]
    svc = Service(small, '--canary', '0.5', '--challenger', '2', '--guard-window', '1')
    try:
        keys = [f'user-{i}' for i in range(400)]
        chal = [k for k in keys if to_challenger(k, 0.5, 'churn:2')]; champ = [k for k in keys if k not in chal]
        t0, seen = time.time(), set()
        while time.time() - t0 < 30:
            for i in range(20):
                r1 = svc.predict([ones[i % len(ones)]], key=chal[i % len(chal)]); r0 = svc.predict([zeros[i % len(zeros)]], key=champ[i % len(champ)])
                assert r1.status_code == r0.status_code == 200
                seen |= {(r1.json()['variant'], r1.json()['predictions'][0]), (r0.json()['variant'], r0.json()['predictions'][0])}
            c = svc.http.get('/health').json()['canary']
            if c['status'] != 'running' or c['windows_judged'] >= 3: break
        assert {('challenger', 1), ('champion', 0)} <= seen  # what a per-request comparison would have seen
        assert (c['status'], c['fraction'], c['reason']) == ('running', 0.5, '') and c['windows_judged'] >= 3, c
        assert svc.predict([ones[0]], key=chal[0]).json()['variant'] == 'challenger'  # keys stay sticky
    finally: assert svc.stop() == 0, svc.output
