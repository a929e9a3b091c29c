"""Planted secrets: a token in an allowlisted environment variable, an `--api-key` argument, a password in the git remote,
a param named `password`, an API key assigned (and printed) in a notebook cell. A real tracked run of a script, and of a
notebook under papermill, must not write any of them anywhere: not in a param or tag, an artifact, the journal, the store.
"""
import json, os, subprocess, sys
from pathlib import Path

import pytest

from conftest import mlops_nb_cli, BIN
from mlops_nb.core.names import meta_of

pytestmark = pytest.mark.integration

# Each value is distinct, so a hit names the way in. Only the environment token and the notebook's OpenAI key have the
# shape of a credential; the others can only be recognised by where they are (flag, URL, param name), as a person's
# password would be.
ENV_TOKEN = 'ghp_' + 'PlantedEnvTok3nAbCdEfGhIjKlMnOpQrStU'
CLI_API_KEY = 'planted-cli-api-key-value-5521'
NB_API_KEY = 'planted-papermill-api-key-7319'
REMOTE_PW = 'planted-remote-pass-4242'
PASSWORD = 'planted-password-hunter2-8086'
OPENAI_KEY = 'sk-proj-' + 'PlantedOpenAIKey0123456789abcdefXYZ'
VIA_VARIABLE = 'planted-db-password-via-variable-3131'  # in a cell only as `pw = '...'`: known as a secret when logged
JWT_COLUMN = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJpbnRlcmFjdGl2ZSJ9.' + 'SW50ZXJhY3RpdmVDb2x1bW4'  # a DataFrame column name
assert len(ENV_TOKEN) == 40

SCRIPT_SECRETS = dict(env_token=ENV_TOKEN, cli_api_key=CLI_API_KEY, remote_password=REMOTE_PW, password_param=PASSWORD)
NB_SECRETS = dict(env_token=ENV_TOKEN, papermill_api_key=NB_API_KEY, remote_password=REMOTE_PW, password_param=PASSWORD,
                  openai_key_in_cell=OPENAI_KEY, password_via_variable=VIA_VARIABLE, jwt_column=JWT_COLUMN)
REMOTE = f'https://ann:{REMOTE_PW}@github.com/org/repo.git'
CLEAN_REMOTE = 'https://github.com/org/repo.git'

PYPROJECT = '[project]\nname = "demo-project"\n\n[tool.mlops_nb]\nenv_allowlist = ["MY_SERVICE_TOKEN", "OMP_*"]\n'


# -- helpers ------------------------------------------------------------------------------------------------------------
def run_git(root, *args): subprocess.run(['git', '-C', str(root), *args], check=True, capture_output=True)


def _init_repo(project):
    "The project as a git repository with a credential-carrying remote; everything present committed."
    (project/'pyproject.toml').write_text(PYPROJECT)
    (project/'.gitignore').write_text('.mlops/\n')
    run_git(project, 'init', '-q', '-b', 'main'); run_git(project, 'config', 'user.email', 'ci@example.com')
    run_git(project, 'config', 'user.name', 'CI'); run_git(project, 'remote', 'add', 'origin', REMOTE)
    run_git(project, 'add', '-A'); run_git(project, 'commit', '-qm', 'project')


def _child_env():
    "The test's environment plus the planted token (allowlisted, so captured) and an allowlisted harmless variable."
    return dict(os.environ, MY_SERVICE_TOKEN=ENV_TOKEN, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')


def _runs(project):
    "`(client, every run of every experiment)` of the project's store, after replaying any journal left behind."
    r = mlops_nb_cli('sync', '--project-dir', str(project), cwd=project, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.store.client import open_client
    c = open_client(resolve_settings(project_dir=project))
    exps = [e.experiment_id for e in c.search_experiments()]
    return c, c.search_runs(exps, max_results=1000)


def _hits(data:bytes, secrets:dict):
    return [name for name, v in secrets.items() if v.encode() in data]


def _snippet(data:bytes, secret:str, width=120):
    i = data.find(secret.encode())
    return data[max(0, i - width):i + len(secret) + width].decode('utf-8', errors='replace')


def _scan(project, client, runs, secrets, tmp_path):
    "Every place the runs wrote a planted secret: `[(secret name, where, snippet)]`; also returns the downloaded artifacts."
    found = []
    for run in runs:
        rid = run.info.run_id
        fields = {f'run {rid} param {k}': v for k, v in run.data.params.items()}
        fields |= {f'run {rid} tag {k}': v for k, v in run.data.tags.items()}
        fields[f'run {rid} name'] = run.info.run_name or ''
        for where, v in fields.items():
            for name in _hits(str(v).encode(), secrets): found.append((name, where, str(v)[:300]))
    downloaded = {}
    for run in runs:
        dst = tmp_path/'artifacts'/run.info.run_id; dst.mkdir(parents=True)
        client.download_artifacts(run.info.run_id, '', str(dst))
        for f in sorted(p for p in dst.rglob('*') if p.is_file()):
            data = f.read_bytes(); rel = f.relative_to(dst).as_posix()
            downloaded[(run.info.run_id, rel)] = data
            for name in _hits(data, secrets): found.append((name, f'artifact {run.info.run_id}/{rel}', _snippet(data, secrets[name])))
    mlops = project/'.mlops'
    for f in sorted(p for p in mlops.rglob('*') if p.is_file()):
        data = f.read_bytes()
        for name in _hits(data, secrets): found.append((name, f'file {f.relative_to(project)}', _snippet(data, secrets[name])))
    return found, downloaded


def _report(found):
    return '\n'.join(f"  {name} in {where}:\n      ...{snip!r}..." for name, where, snip in found)


def _artifact(downloaded, run_id, rel):
    assert (run_id, rel) in downloaded, f"no artifact {rel}; the run has {sorted(r for i, r in downloaded if i == run_id)}"
    return downloaded[(run_id, rel)].decode()


# -- a script ---------------------------------------------------------------------------------------------------------------
TRAIN = f"""import argparse
import mlops_nb as mn
args = argparse.ArgumentParser(); args.add_argument('--api-key'); args = args.parse_args()
run = mn.track(system_metrics=None)
mn.log_param('password', '{PASSWORD}')
mn.log_param('lr', 0.1)
mn.log_metric('m', 1.0)
mn.stop()
print('RUN-DONE', flush=True)
"""


def test_script_run_writes_no_planted_secret(project, tmp_path):
    (project/'train.py').write_text(TRAIN)
    _init_repo(project)
    r = subprocess.run([sys.executable, 'train.py', '--api-key', CLI_API_KEY], cwd=project, env=_child_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and 'RUN-DONE' in r.stdout, r.stdout + r.stderr[-3000:]
    client, runs = _runs(project)
    assert len(runs) == 1, [x.info.run_id for x in runs]
    run = runs[0]

    found, downloaded = _scan(project, client, runs, SCRIPT_SECRETS, tmp_path)

    # The scan cannot pass for want of material: each secret was captured, and replaced by `***` where it was
    assert run.info.status == 'FINISHED'
    assert run.data.params == {'password': '***', 'lr': '0.1'}, run.data.params
    assert run.data.metrics['m'] == 1.0
    assert run.data.tags['mlflow.source.git.repoURL'] == CLEAN_REMOTE
    assert run.data.tags['mlflow.source.name'].endswith('train.py')
    ctx = json.loads(_artifact(downloaded, run.info.run_id, 'context/context.json'))
    assert ctx['environment']['env'] == {'MY_SERVICE_TOKEN': '***', 'OMP_NUM_THREADS': '1'}, ctx['environment']['env']
    assert ctx['code']['git']['remote'] == CLEAN_REMOTE
    argv = ctx['command']['argv']
    assert argv[-2:] == ['--api-key', '***'] and argv[0].endswith('train.py'), argv
    assert ctx['params']['logged'] == {'password': '***', 'lr': '0.1'}, ctx['params']['logged']
    assert (project/'.mlops'/'mlflow.db').is_file() and any((project/'.mlops').rglob('context.json'))  # scanned above

    assert not found, f"planted secrets written by the script's run:\n{_report(found)}"


# -- a notebook under papermill ----------------------------------------------------------------------------------------------
def _cell(i, source, tags=()):
    return dict(cell_type='code', id=f'c{i}', metadata=dict(tags=list(tags)) if tags else {}, execution_count=None,
                outputs=[], source=source)


def _notebook(with_secrets):
    "A tracked notebook; `with_secrets` adds the cell holding (and printing) an OpenAI key, and the `password` param."
    cells = [("api_key = 'none'", ['parameters'])]
    if with_secrets: cells.append((f'OPENAI_API_KEY = "{OPENAI_KEY}"\nprint(OPENAI_API_KEY)', []))
    cells += [("%load_ext mlops_nb\nimport mlops_nb as mn", []),
              ("%mlops track --system-metrics 0", []),
              # The start-up capture (git diff, untracked files) runs in the background; a real notebook reaches its next
              # cells seconds later, long after it is done. Wait for it, so the order is that one, every time.
              ("_cap = getattr(mn.active_run(), 'capture', None)\n"
               "if _cap is not None: _cap._thread.join(30)\n"
               "import time; time.sleep(0 if _cap is not None else 2)", [])]
    if with_secrets: cells.append((f"print(OPENAI_API_KEY)\nmn.log_param('password', '{PASSWORD}')\n"
                                   f"pw = '{VIA_VARIABLE}'\nmn.log_param('db_password', pw)", []))
    if with_secrets: cells.append((f"import pandas as pd\nmn.track_data(pd.DataFrame({{'{JWT_COLUMN}': [1, 2], 'age': [3, 4]}}), name='users')", []))
    cells += [("mn.log_param('lr', 0.1)\nmn.log_metric('m', 1.0)", []), ("%mlops stop", [])]
    return dict(nbformat=4, nbformat_minor=5,
                metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')),
                cells=[_cell(i, s, t) for i, (s, t) in enumerate(cells)])


@pytest.mark.parametrize('nb_state', ['modified', 'untracked'])
def test_papermill_notebook_run_writes_no_planted_secret(project, tmp_path, nb_state):
    nb = project/'train.ipynb'
    if nb_state == 'modified': nb.write_text(json.dumps(_notebook(False), indent=1))  # committed without the secrets ...
    _init_repo(project)
    nb.write_text(json.dumps(_notebook(True), indent=1))  # ... which are an uncommitted change, or the file is untracked
    (project/'outputs').mkdir()  # papermill's output notebook: in the project, untracked, saved after every cell
    r = subprocess.run([str(BIN/'papermill'), 'train.ipynb', 'outputs/train-out.ipynb', '--no-progress-bar',
                        '-p', 'api_key', NB_API_KEY], cwd=project, env=_child_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out_nb = (project/'outputs'/'train-out.ipynb').read_text()
    assert OPENAI_KEY in out_nb and NB_API_KEY in out_nb  # the secrets really were in the kernel, and printed
    client, runs = _runs(project)
    assert len(runs) == 1, [x.info.run_id for x in runs]
    run = runs[0]

    found, downloaded = _scan(project, client, runs, NB_SECRETS, tmp_path)

    # The scan cannot pass for want of material: each secret was captured, and replaced by `***` where it was
    rid = run.info.run_id
    assert run.info.status == 'FINISHED'
    assert run.data.params == {'password': '***', 'db_password': '***', 'lr': '0.1'}, run.data.params
    assert meta_of(run.data.tags)['notebook_source'] == 'papermill'
    assert run.data.tags['mlflow.source.git.repoURL'] == CLEAN_REMOTE
    assert meta_of(run.data.tags)['git.dirty'] == 'True'
    assert json.loads(meta_of(run.data.tags)['papermill.parameters']) == {'api_key': '***'}
    ctx = json.loads(_artifact(downloaded, rid, 'context/context.json'))
    assert ctx['params']['papermill'] == {'api_key': '***'}
    assert ctx['environment']['env'] == {'MY_SERVICE_TOKEN': '***', 'OMP_NUM_THREADS': '1'}, ctx['environment']['env']
    assert ctx['code']['git']['remote'] == CLEAN_REMOTE
    parent = ctx['command']['parent']
    assert any('papermill' in a for a in parent) and ['-p', 'api_key', '***'] == parent[parent.index('-p'):parent.index('-p') + 3], parent
    assert ctx['params']['logged'] == {'password': '***', 'db_password': '***', 'lr': '0.1'}
    cells = _artifact(downloaded, rid, 'notebook/cells.json')
    assert "print(OPENAI_API_KEY)" in cells and "mn.log_param('password', '***')" in cells, cells[:2000]
    saved = _artifact(downloaded, rid, 'notebook/train.ipynb')
    assert 'OPENAI_API_KEY = \\"***\\"' in saved, saved[:2000]
    assert 'outputs/train-out.ipynb' in ctx['code']['git']['untracked']
    out_copy = _artifact(downloaded, rid, 'context/untracked/outputs/train-out.ipynb')
    assert 'OPENAI_API_KEY' in out_copy and '***' in out_copy
    if nb_state == 'modified':
        assert ctx['code']['git']['changed'] == ['train.ipynb'], ctx['code']['git']
        diff = _artifact(downloaded, rid, 'context/git.diff')
        assert 'OPENAI_API_KEY' in diff and 'log_param' in diff, diff[:2000]
    else:
        assert 'train.ipynb' in ctx['code']['git']['untracked']
        assert 'OPENAI_API_KEY' in _artifact(downloaded, rid, 'context/untracked/train.ipynb')

    assert not found, f"planted secrets written by the notebook's run ({nb_state} notebook):\n{_report(found)}"


# -- `mlops-nb run`: a dozen secrets of different kinds, every byte it writes or prints ---------------------------------------
# Distinct values again; which ways in each one takes is in its name.
RUN_SECRETS = dict(
    password_param='planted-run-db-pass-0001',  # -p db_password
    token_param='planted-run-api-token-0002',  # -p api_token
    url_credentials='planted-url-pass-0003',  # -p db_url postgresql://ann:...@host/db
    aws_key_value='AKIA' + 'PLANTED000000004',  # -p region_key: no secret name, the shape of an AWS key id
    marked_secret='planted-marked-conn-0005',  # -p conn ... --secret conn: only the flag says so
    yaml_secret='planted-yaml-secret-0006',  # in -f params.yaml as api_secret
    env_secret='planted-env-token-0007',  # MY_SERVICE_TOKEN in the environment, printed by a cell
    github_token_printed='ghp_' + 'PlantedPrintedTok3nAbCdEfGhIjKlMnOp',  # in a cell's source and printed
    jwt_column='eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwbGFudGVkLWNvbHVtbiJ9.' + 'UGxhbnRlZENvbHVtblNpZ24',  # a DataFrame column name
    slack_in_exception='xoxb-' + '424242424242-PlantedExceptionTok',  # in the failing cell's exception message
    password_in_exception='planted-run-db-pass-0001',  # the password param again, in the exception message
    stripe_key_value='sk_live_' + 'PlantedStripeKey00000012',  # -p billing: the shape of a Stripe key
    url_password_printed='planted-url-pass-0003',  # the URL's password, printed by a cell
)
assert len(RUN_SECRETS) >= 12

RUN_NB_PARAMS = ("db_password = ''\napi_token = ''\ndb_url = ''\nregion_key = ''\nconn = ''\napi_secret = ''\n"
                 "billing = ''\ntoken_ttl = 30\nlr = 0.1")
RUN_NB_CELLS = [
    "import os, pandas as pd\nimport mlops_nb as mn\nprint('env', os.environ['MY_SERVICE_TOKEN'])\n"
    "print('conn', conn, 'url', db_url.split(':')[2].split('@')[0])",
    f"gh = '{RUN_SECRETS['github_token_printed']}'\nprint('gh', gh)",
    f"df = pd.DataFrame({{'{RUN_SECRETS['jwt_column']}': [1, 2, 3], 'age': [30, 40, 50]}})\nmn.track_data(df, name='users')",
    "mn.log_metric('m', 1.0)",
    f"raise ValueError('login refused for ' + db_password + ' with {RUN_SECRETS['slack_in_exception']}')",
]


def test_mlops_nb_run_writes_and_prints_no_planted_secret(project, tmp_path):
    from conftest import mlops_nb_cli
    sys.path.insert(0, str(Path(__file__).parent))
    from test_pipeline import _write_nb
    _write_nb(project/'train.ipynb', *RUN_NB_CELLS, params=RUN_NB_PARAMS)
    _init_repo(project)  # the notebook is untracked: it is recorded whole, redacted
    (project/'params.yaml').write_text(f"api_secret: {RUN_SECRETS['yaml_secret']}\nlr: 0.2\n")
    env = dict(_child_env(), MY_SERVICE_TOKEN=RUN_SECRETS['env_secret'])
    args = ['run', 'train.ipynb', '-f', 'params.yaml', '-p', 'db_password', RUN_SECRETS['password_param'],
            '-p', 'api_token', RUN_SECRETS['token_param'], '-p', 'db_url', f"postgresql://ann:{RUN_SECRETS['url_credentials']}@db.internal/x",
            '-p', 'region_key', RUN_SECRETS['aws_key_value'], '-p', 'conn', RUN_SECRETS['marked_secret'], '--secret', 'conn',
            '-p', 'billing', RUN_SECRETS['stripe_key_value']]
    r = mlops_nb_cli(*args, cwd=project, env=env, timeout=240)
    rj = mlops_nb_cli(*args, '--json', '--no-html', cwd=project, env=env, timeout=240)
    assert r.returncode == 7 and rj.returncode == 7, r.stdout + r.stderr + rj.stderr  # the last cell raises
    assert 'Running train.ipynb with {' in r.stderr and '"db_password": "***"' in r.stderr and '"conn": "***"' in r.stderr, r.stderr
    out = json.loads(rj.stdout)
    assert out['parameters']['db_password'] == '***' and out['parameters']['lr'] == 0.2 and out['parameters']['region_key'] == '***', out
    assert out['error'].startswith('cell ') and 'ValueError: login refused for ***' in out['error'], out['error']

    client, runs = _runs(project)
    assert len(runs) == 2 and all(x.info.status == 'FAILED' for x in runs), [(x.info.run_id, x.info.status) for x in runs]
    found, downloaded = _scan(project, client, runs, RUN_SECRETS, tmp_path)
    # every byte under .mlops/ (the SQLite store included) and all that was printed
    for f in sorted(p for p in (project/'.mlops').rglob('*') if p.is_file()):
        data = f.read_bytes()
        found += [(n, f'file {f.relative_to(project)}', _snippet(data, RUN_SECRETS[n])) for n in _hits(data, RUN_SECRETS)]
    for label, text in [('stdout', r.stdout), ('stderr', r.stderr), ('--json stdout', rj.stdout), ('--json stderr', rj.stderr)]:
        found += [(n, label, _snippet(text.encode(), RUN_SECRETS[n])) for n in _hits(text.encode(), RUN_SECRETS)]

    # The scan cannot pass for want of material: the kernel had the real values, and what was kept says `***` where they were
    run = next(x for x in runs if any(i == x.info.run_id and p.endswith('.html') for i, p in downloaded))  # the run without --no-html
    rid = run.info.run_id
    assert {k: run.data.params[k] for k in ('db_password', 'api_token', 'conn', 'api_secret', 'region_key', 'billing')} == dict.fromkeys(
        ('db_password', 'api_token', 'conn', 'api_secret', 'region_key', 'billing'), '***'), run.data.params
    assert run.data.params['db_url'] == 'postgresql://ann:***@db.internal/x' and run.data.params['token_ttl'] == '30'
    assert 'login refused for ***' in run.data.tags['mlops_nb.pipeline.error']
    assert 'ValueError' in _artifact(downloaded, rid, 'pipeline/error.txt')
    executed = next(v.decode() for (i, p), v in downloaded.items() if i == rid and p.startswith('pipeline/') and p.endswith('.ipynb'))
    assert 'env ***' in executed and 'conn *** url ***' in executed and 'gh ***' in executed, executed[:3000]
    assert 'db_password = \\"***\\"' in executed and 'token_ttl = 30' in executed  # the injected parameters cell
    html = next(v.decode() for (i, p), v in downloaded.items() if i == rid and p.endswith('.html'))
    assert 'gh ***' in html
    prof = json.loads(_artifact(downloaded, rid, 'data/users.profile.json'))
    assert 'age' in json.dumps(prof) and '***' in json.dumps(prof)
    ctx = json.loads(_artifact(downloaded, rid, 'context/context.json'))
    assert set(ctx['data']['users']['columns']) == {'***', 'age'}, ctx['data']['users']

    assert not found, f"planted secrets written or printed by `mlops-nb run`:\n{_report(found)}"
