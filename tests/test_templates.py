"""The notebooks in templates/ end to end: copied into a fresh git project, run by papermill on real kernels, checked in its store."""
import json, shutil, subprocess, uuid
from pathlib import Path

import pytest

from conftest import BIN, REPO
from mlops_nb.core.names import meta_of

pytestmark = pytest.mark.integration

TEMPLATES = REPO/'templates'
NAMES = ('train', 'monitor', 'batch_score')
MODEL = 'mlops-nb-model'


def test_templates_are_clean_and_typed():
    "Saved without outputs or execution counts; the first code cell is papermill's, with typed defaults."
    from mlops_nb.pipelines.params import read_parameters
    for name in NAMES:
        nb = json.loads((TEMPLATES/f'{name}.ipynb').read_text())
        code = [c for c in nb['cells'] if c['cell_type'] == 'code']
        assert all(c['execution_count'] is None and c['outputs'] == [] for c in code), f"{name}.ipynb has outputs"
        assert code[0]['metadata'].get('tags') == ['parameters'], name
        assert not any(c['metadata'].get('tags') for c in code[1:]), name
        assert nb['metadata']['kernelspec']['name'] == 'python3'
    types = {k: p.type for k, p in read_parameters(TEMPLATES/'train.ipynb').items()}
    assert types == dict(data_path='str', target='str', n_trials='int', timeout='float', seed='int', test_size='float',
                         min_auc='float', model_name='str', reference_schema='str', optuna_storage='str', study_name='str',
                         executor='str', fail_on_gate='bool')
    assert {k: p.type for k, p in read_parameters(TEMPLATES/'monitor.ipynb').items()}.items() >= \
        dict(batch_path='str', reference='str', alpha='float', fail_on_drift='bool', shift='float').items()
    assert {k: p.type for k, p in read_parameters(TEMPLATES/'batch_score.ipynb').items()}.items() >= \
        dict(model_name='str', alias='str', batch_path='str', output_path='str').items()


def run_git(root, *args):
    return subprocess.run(['git', '-C', str(root), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(project):
    "The project as a git repository holding a copy of the templates, as a user who copied them has."
    shutil.copytree(TEMPLATES, project/'templates')
    (project/'.gitignore').write_text(".mlops/\n")
    run_git(project, 'init', '-q', '-b', 'main'); run_git(project, 'config', 'user.email', 'ci@example.com'); run_git(project, 'config', 'user.name', 'CI')
    run_git(project, 'add', '-A'); run_git(project, 'commit', '-qm', 'templates')
    return project


def _papermill(project, name, *params, ok=True):
    "Run templates/NAME.ipynb headless from the project folder; the CompletedProcess."
    args = [str(BIN/'papermill'), f'templates/{name}.ipynb', str(project.parent/f'out-{name}-{uuid.uuid4().hex[:6]}.ipynb'),
            '--no-progress-bar']
    for i in range(0, len(params), 2): args += ['-p', params[i], str(params[i + 1])]
    r = subprocess.run(args, cwd=project, capture_output=True, text=True, timeout=300)
    if ok: assert r.returncode == 0, f"{name} failed:\n{r.stderr[-4000:]}"
    return r


def _runs(project, name):
    "The top-level runs called `name`, oldest first (journals a kernel left are replayed first)."
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.store.client import open_client
    from mlops_nb.tracking.sync import replay_journals
    s = resolve_settings(project_dir=project)
    replay_journals(s)
    c = open_client(s)
    exp = c.get_experiment_by_name('demo-project')
    return c.search_runs([exp.experiment_id], f"tags.mlflow.runName = '{name}'", order_by=['attributes.start_time ASC']), c, s


def _held_out(run): return {k: run.data.metrics[k] for k in ('auc', 'accuracy', 'logloss')}


def test_train_reproduces_registers_a_candidate_with_lineage_and_batch_scores_it(repo):
    from mlops_nb.models.registry import model_version
    for _ in range(2): _papermill(repo, 'train', 'n_trials', 4)
    runs, client, s = _runs(repo, 'train')
    assert [r.info.status for r in runs] == ['FINISHED', 'FINISHED']
    first, second = runs
    assert _held_out(first) == _held_out(second), "same seed, same data: the held-out metrics must be identical"
    assert _held_out(second)['auc'] > 0.9 and second.data.tags['mlops_nb.gates'] == 'passed'
    assert (first.data.tags['mlops_nb.schema'], second.data.tags['mlops_nb.schema']) == ('created', 'ok')
    assert json.loads((repo/'reference'/'schema.json').read_text())['columns']['target'] == 'int64'

    trials = client.search_runs([second.info.experiment_id], f"tags.mlflow.parentRunId = '{second.info.run_id}'")
    assert len(trials) == 4 and all('learning_rate' in t.data.params and 'val_auc' in t.data.metrics for t in trials)
    assert {t.data.tags['optuna.state'] for t in trials} <= {'COMPLETE', 'PRUNED'}

    mv = model_version(MODEL, 'candidate', settings=s)
    assert (mv['version'], mv['run_id']) == (2, second.info.run_id)
    tags = mv['tags']
    assert tags['mlops_nb.run_id'] == second.info.run_id
    for data in ('dataset', 'train', 'test'):
        key = f'mlops_nb.data.{data}.fingerprint'
        assert tags[key] == meta_of(second.data.tags)[key[9:]] == meta_of(first.data.tags)[key[9:]]
    assert (tags['mlops_nb.param.seed'], tags['mlops_nb.param.n_trials'], tags['optuna.trials']) == ('42', '4', '4')
    assert tags['mlops_nb.param.best.num_leaves'] == second.data.params['best.num_leaves']
    assert tags['mlops_nb.git.commit'] == run_git(repo, 'rev-parse', 'HEAD')
    assert tags['mlops_nb.notebook'].endswith('templates/train.ipynb')

    _papermill(repo, 'batch_score')
    (score,), _, _ = _runs(repo, 'batch-score')
    m = score.data.metrics
    assert m['scoring/rows'] == 569 and 0 < m['scoring/mean_score'] < 1 and 0 < m['scoring/positive_rate'] < 1, m
    assert (score.data.tags['model.version'], score.data.tags['model.run_id']) == ('2', second.info.run_id)
    assert [a.path for a in client.list_artifacts(score.info.run_id, 'predictions')] == ['predictions/predictions.csv']
    assert len((repo/'predictions.csv').read_text().splitlines()) == 570


def test_schema_skew_and_failed_gate_stop_the_run(repo):
    from sklearn.datasets import load_breast_cancer
    from mlops_nb.models.registry import model_version
    r = _papermill(repo, 'train', 'n_trials', 2, 'min_auc', 0.9999, ok=False)  # writes the reference schema; the gate fails
    assert r.returncode != 0 and 'GateError' in r.stderr and 'auc below the minimum 0.9999' in r.stderr, r.stderr[-3000:]
    skewed = repo/'skewed.csv'
    load_breast_cancer(as_frame=True).frame.drop(columns='mean radius').to_csv(skewed, index=False)
    r = _papermill(repo, 'train', 'n_trials', 2, 'data_path', skewed, ok=False)
    assert r.returncode != 0
    assert 'SchemaError' in r.stderr and 'missing columns: mean radius' in r.stderr, r.stderr[-3000:]
    assert 'update the reference schema at' in r.stderr
    runs, _, s = _runs(repo, 'train')
    assert [x.info.status for x in runs] == ['FAILED', 'FAILED']
    assert runs[0].data.tags['mlops_nb.gates'] == 'failed' and 'mlops_nb.gates' not in runs[1].data.tags
    assert model_version(MODEL, 'candidate', settings=s) is None  # nothing registered


def test_monitor_flags_the_shifted_features_only_when_shifted(repo):
    _papermill(repo, 'monitor')
    _papermill(repo, 'monitor', 'shift', 0)
    (shifted, same), client, _ = _runs(repo, 'monitor')
    assert shifted.data.metrics['drift/features_drifted'] >= 1
    assert same.data.metrics['drift/features_drifted'] == 0 and same.data.metrics['drift/share_drifted'] == 0
    assert shifted.data.tags['mlops_nb.drift.verdict'] == 'drift' and same.data.tags['mlops_nb.drift.verdict'] != 'drift'
    assert shifted.data.metrics['drift/score/mean radius'] > 2 > same.data.metrics['drift/score/mean radius']
    assert len([k for k in same.data.metrics if k.startswith('drift/score/')]) == 31  # 30 features and the label
    assert meta_of(shifted.data.tags)['data.batch.role'] == 'serving'
    assert meta_of(shifted.data.tags)['data.batch.profile'] == 'data/batch.profile.json'
    arts = {a.path for a in client.list_artifacts(shifted.info.run_id, 'drift')}
    assert arts == {'drift/drift.json', 'drift/drift.html', 'drift/current.profile.json'}
    report = json.loads(Path(client.download_artifacts(shifted.info.run_id, 'drift/drift.json', str(repo.parent))).read_text())
    moved = {'mean radius', 'mean texture', 'mean concavity', 'worst smoothness'}
    assert set(report['drifted']) & moved and set(report['drifted']) <= moved | {'mean perimeter', 'mean area', 'worst radius', 'worst perimeter', 'worst area', 'mean compactness', 'mean concave points', 'worst concavity', 'worst concave points', 'worst texture', 'mean smoothness'}


def test_monitor_fails_on_drift_when_asked_and_takes_a_training_run_as_reference(repo):
    "The reference is the training run's stored profile; fail_on_drift stops the notebook after everything is logged."
    _papermill(repo, 'monitor', 'shift', 0)
    (first,), client, _ = _runs(repo, 'monitor')
    import pandas as pd
    from sklearn.datasets import load_breast_cancer
    batch = load_breast_cancer(as_frame=True).frame.sample(200, random_state=3)
    batch['mean radius'] += 2*batch['mean radius'].std()
    batch.to_csv(repo/'batch.csv', index=False)
    r = _papermill(repo, 'monitor', 'reference', first.info.run_id, 'batch_path', 'batch.csv', 'fail_on_drift', True, ok=False)
    assert r.returncode != 0 and 'The batch drifted from the reference' in r.stderr, r.stderr[-3000:]
    runs, client, _ = _runs(repo, 'monitor')
    failed = runs[-1]
    assert failed.info.status == 'FAILED' and failed.data.tags['mlops_nb.drift.verdict'] == 'drift'
    assert failed.data.metrics['drift/score/mean radius'] > 5
