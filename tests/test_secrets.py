"""Planted secrets: a token in an allowlisted environment variable, an `--api-key` argument, a password in the git remote,
a param named `password`, an API key assigned (and printed) in a notebook cell. A real tracked run of a script, and of a
notebook under papermill, must not write any of them anywhere: not in a param or tag, an artifact, the journal, the store.
"""
import json, os, subprocess, sys
from pathlib import Path

import pytest

from conftest import mlops_nb_cli, BIN

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
assert len(ENV_TOKEN) == 40

SCRIPT_SECRETS = dict(env_token=ENV_TOKEN, cli_api_key=CLI_API_KEY, remote_password=REMOTE_PW, password_param=PASSWORD)
NB_SECRETS = dict(env_token=ENV_TOKEN, papermill_api_key=NB_API_KEY, remote_password=REMOTE_PW, password_param=PASSWORD,
                  openai_key_in_cell=OPENAI_KEY, password_via_variable=VIA_VARIABLE)
REMOTE = f'https://ann:{REMOTE_PW}@github.com/org/repo.git'
CLEAN_REMOTE = 'https://github.com/org/repo.git'

PYPROJECT = '[project]\nname = "demo-project"\n\n[tool.mlops_nb]\nenv_allowlist = ["MY_SERVICE_TOKEN", "OMP_*"]\n'


# -- helpers ------------------------------------------------------------------------------------------------------------
def _git(root, *args): subprocess.run(['git', '-C', str(root), *args], check=True, capture_output=True)


def _init_repo(project):
    "The project as a git repository with a credential-carrying remote; everything present committed."
    (project/'pyproject.toml').write_text(PYPROJECT)
    (project/'.gitignore').write_text('.mlops/\n')
    _git(project, 'init', '-q', '-b', 'main'); _git(project, 'config', 'user.email', 'ci@example.com')
    _git(project, 'config', 'user.name', 'CI'); _git(project, 'remote', 'add', 'origin', REMOTE)
    _git(project, 'add', '-A'); _git(project, 'commit', '-qm', 'project')


def _child_env():
    "The test's environment plus the planted token (allowlisted, so captured) and an allowlisted harmless variable."
    return dict(os.environ, MY_SERVICE_TOKEN=ENV_TOKEN, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')


def _runs(project):
    "`(client, every run of every experiment)` of the project's store, after replaying any journal left behind."
    r = mlops_nb_cli('sync', '--project-dir', str(project), cwd=project, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    from mlops_nb.config import resolve_settings
    from mlops_nb.store import open_client
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
    assert run.data.tags['mlops_nb.notebook_source'] == 'papermill'
    assert run.data.tags['mlflow.source.git.repoURL'] == CLEAN_REMOTE
    assert run.data.tags['mlops_nb.git.dirty'] == 'True'
    assert json.loads(run.data.tags['mlops_nb.papermill.parameters']) == {'api_key': '***'}
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
