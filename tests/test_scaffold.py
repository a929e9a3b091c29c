"""`mlops-nb init`: a scaffolded project whose CI workflow's steps run, here, as written."""
import json, os, subprocess
from pathlib import Path

import pytest
import yaml

from conftest import BIN, mlops_nb_cli
from mlops_nb.core.config import resolve_settings
from mlops_nb.store.client import open_client

pytestmark = pytest.mark.integration


def test_init_scaffolds_a_project_whose_workflow_steps_run(tmp_path, env):
    proj = tmp_path/'churn'
    r = mlops_nb_cli('init', str(proj), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for rel in ('notebooks/train.ipynb', 'notebooks/monitor.ipynb', 'notebooks/batch_score.ipynb', '.github/workflows/mlops-nb.yml',
                '.pre-commit-config.yaml', 'requirements.txt', 'pyproject.toml', '.gitignore'):
        assert (proj/rel).is_file(), rel
    assert resolve_settings(project_dir=proj, env={}).experiment == 'churn'
    pre = yaml.safe_load((proj/'.pre-commit-config.yaml').read_text())
    assert pre['repos'][0]['hooks'][0]['id'] == 'nbstripout'
    nb = json.loads((proj/'notebooks/train.ipynb').read_text())
    assert any('parameters' in c['metadata'].get('tags', []) for c in nb['cells'])  # papermill's tag survived the copy

    wf = yaml.safe_load((proj/'.github/workflows/mlops-nb.yml').read_text())
    steps = wf['jobs']['pipeline']['steps']
    assert [s['uses'].split('@')[0] for s in steps if 'uses' in s] == ['actions/checkout', 'actions/setup-python', 'actions/upload-artifact']
    assert 'mlops-nb[train]' in (proj/'requirements.txt').read_text()
    # GitHub's own actions (checkout, setup-python, upload) and the install step (this checkout is installed already)
    # are GitHub's side; every other step runs here as written, with the secret unset as on a fork's pull request.
    run_env = {**os.environ, 'PATH': f"{BIN}{os.pathsep}{os.environ['PATH']}", 'MLFLOW_TRACKING_URI': ''}
    ran = []
    for step in steps:
        if 'uses' in step or step['name'] == 'Install': continue
        r = subprocess.run(step['run'], shell=True, cwd=proj, env=run_env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"step {step['name']!r} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        ran.append(step['name'])
    assert ran == ['Train', 'Monitor']
    assert (proj/'executed/train.ipynb').is_file() and (proj/'executed/monitor.ipynb').is_file()  # what the upload step uploads
    c = open_client(resolve_settings(project_dir=proj, env={}))
    runs = c.search_runs([c.get_experiment_by_name('churn').experiment_id], filter_string="tags.`mlops_nb.pipeline_run` = 'true'")
    assert sorted(r.data.tags['mlops_nb.pipeline'] for r in runs) == ['monitor.ipynb', 'train.ipynb']
    assert all(r.info.status == 'FINISHED' for r in runs)


def test_init_keeps_what_exists(tmp_path, env):
    proj = tmp_path/'p'; (proj/'notebooks').mkdir(parents=True)
    (proj/'notebooks/train.ipynb').write_text('{"cells": []}')
    (proj/'pyproject.toml').write_text('[project]\nname = "p"\n\n[tool.mlops_nb]\nexperiment = "mine"\n')
    r = mlops_nb_cli('init', str(proj), cwd=tmp_path)
    assert r.returncode == 0 and 'kept        notebooks/train.ipynb' in r.stdout and '--force overwrites' in r.stdout
    assert (proj/'notebooks/train.ipynb').read_text() == '{"cells": []}'
    assert resolve_settings(project_dir=proj, env={}).experiment == 'mine'


@pytest.mark.parametrize('before', [
    None,  # a new pyproject.toml, in a folder whose name needs quoting
    'tool = {black = {line-length = 100}}  # inline, before any table\n\n[project]\nname = "p"\n',
    '[project]\nname = "p"  # mine\n\n[tool.black]\nline-length = 100\n\n[build-system]\nrequires = ["setuptools"]\n',
])
def test_init_writes_a_pyproject_every_later_command_can_read(tmp_path, env, before):
    import tomllib
    proj = tmp_path/'team "blue" proj'; proj.mkdir()
    if before: (proj/'pyproject.toml').write_text(before)
    r = mlops_nb_cli('init', str(proj), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = (proj/'pyproject.toml').read_text()
    assert tomllib.loads(text)['tool']['mlops_nb']['experiment'] == 'team "blue" proj'
    if before: assert all(line in text for line in before.splitlines()) or 'tool = {black' in text, text  # the user's lines kept
    r = mlops_nb_cli('config', '--no-check', '--json', '--project-dir', str(proj), cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)['experiment']['value'] == 'team "blue" proj', r.stderr


def test_init_leaves_a_pyproject_it_cannot_read_as_it_was(tmp_path, env):
    proj = tmp_path/'p'; proj.mkdir()
    (proj/'pyproject.toml').write_text('[project\nname = "p"\n')
    r = mlops_nb_cli('init', str(proj), cwd=tmp_path)
    assert r.returncode == 3 and 'is not valid TOML' in r.stderr and 'pyproject.toml' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert (proj/'pyproject.toml').read_text() == '[project\nname = "p"\n'
