"""The `mlops-nb` command as a user runs it: the installed console script, in a real project folder."""
import json, os, signal, socket, subprocess, time, urllib.request
from pathlib import Path

import psutil
import pytest

from mlops_nb.cli import cli
from conftest import mlops_nb_cli


def api(url, path, body=None):
    "Call the MLflow REST API of a running server."
    req = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", data=json.dumps(body).encode() if body else None,
                                 headers={'Content-Type': 'application/json'}, method='POST' if body else 'GET')
    with urllib.request.urlopen(req, timeout=10) as r: return json.loads(r.read())


@pytest.mark.integration
@pytest.mark.parametrize('command', [None, *sorted(cli.commands)])
def test_every_command_has_help_with_exit_codes(project, command):
    r = mlops_nb_cli(*([command] if command else []), '--help', check=True)
    assert 'Usage: mlops-nb' in r.stdout and 'Exit codes:' in r.stdout and '130  interrupted' in r.stdout


@pytest.mark.integration
def test_version(project):
    import mlops_nb
    assert mlops_nb.__version__ in mlops_nb_cli('--version', check=True).stdout


@pytest.mark.integration
def test_unknown_command_and_option_exit_2(project):
    assert mlops_nb_cli('nope').returncode == 2
    r = mlops_nb_cli('config', '--jsn')
    assert r.returncode == 2 and 'No such option' in r.stderr


@pytest.mark.integration
def test_quickstart_json_reports_a_finished_run_in_the_project_store(project):
    r = mlops_nb_cli('quickstart', '--demo', '--json', check=True)
    out = json.loads(r.stdout)
    assert out['store_created'] is True and out['tracking_uri'] == f"sqlite:///{project}/.mlops/mlflow.db"
    assert out['metrics']['test_accuracy'] > 0.9
    from mlflow import MlflowClient
    run = MlflowClient(f"sqlite:///{project}/.mlops/mlflow.db").get_run(out['run_id'])
    assert run.info.status == 'FINISHED' and run.data.params['model'] == 'logistic_regression'
    assert Path(out['artifact_uri'], 'model.json').is_file()
    again = json.loads(mlops_nb_cli('quickstart', '--demo', '--json', check=True).stdout)
    assert again['store_created'] is False and again['experiment_id'] == out['experiment_id']


@pytest.mark.integration
def test_quickstart_runs_the_pipeline_and_says_where_to_look(project):
    r = mlops_nb_cli('quickstart', '--dir', 'qs', '--trials', '3', '--json', cwd=project, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out['project'] == str(project/'qs') and out['train']['metrics']['auc'] > 0.9
    assert out['model']['alias'] == 'candidate' and out['model']['run_id'] == out['train']['run_id']
    assert out['monitor']['metrics']['drift/features_drifted'] >= 1  # the shifted batch drifts
    assert (project/'qs'/'executed'/'train.ipynb').is_file() and (project/'qs'/'notebooks'/'monitor.ipynb').is_file()
    r = mlops_nb_cli('quickstart', '--dir', 'qs', '--trials', '2', cwd=project, timeout=300)  # again, in the same project
    assert r.returncode == 0 and 'version 2 @candidate' in r.stdout and 'mlops-nb ui' in r.stdout, r.stdout + r.stderr


@pytest.mark.integration
def test_quickstart_on_a_dead_server_fails_cleanly(project):
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    r = mlops_nb_cli('quickstart', '--demo', env={**os.environ, 'MLFLOW_TRACKING_URI': f'http://127.0.0.1:{port}'})
    assert r.returncode == 3 and 'no tracking server answers' in r.stderr and 'Traceback' not in r.stderr


def _start_ui(project, *args):
    exe = Path(mlops_nb_cli.__globals__['BIN'])/'mlops-nb'
    proc = subprocess.Popen([str(exe), 'ui', '--port', '0', *args], cwd=project, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None: break
        if line.startswith('MLflow UI for'):
            return proc, line.split(' at ')[1].split()[0]
    proc.kill()
    raise AssertionError(f"mlops-nb ui did not come up (exit code {proc.poll()})")


@pytest.mark.slow
@pytest.mark.integration
def test_quickstart_run_is_visible_through_the_ui_rest_api(project):
    run_id = json.loads(mlops_nb_cli('quickstart', '--demo', '--json', check=True).stdout)['run_id']
    proc, url = _start_ui(project)
    try:
        assert url.startswith('http://127.0.0.1:')
        exp = api(url, 'experiments/get-by-name?experiment_name=quickstart')['experiment']
        runs = api(url, 'runs/search', {'experiment_ids': [exp['experiment_id']]})['runs']
        assert [r['info']['run_id'] for r in runs] == [run_id]
        metrics = {m['key']: m['value'] for m in runs[0]['data']['metrics']}
        assert metrics['test_accuracy'] > 0.9 and 'final_loss' in metrics
        arts = api(url, f'artifacts/list?run_id={run_id}')['files']
        assert {a['path'] for a in arts} == {'model.json', 'summary.json'}
        server = psutil.Process(proc.pid).children(recursive=True)
        assert any('mlflow' in ' '.join(c.cmdline()) for c in server), "the MLflow server process was not found"
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    assert code == 130
    gone, alive = psutil.wait_procs(server, timeout=5)
    assert alive == [], f"stopping the UI left MLflow server processes behind: {alive}"


@pytest.mark.slow
@pytest.mark.integration
def test_ui_on_a_busy_port_names_the_port_and_the_fix(project):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); s.listen(); port = s.getsockname()[1]
        r = mlops_nb_cli('ui', '--port', str(port))
    assert r.returncode == 3
    assert f"`ui_port` = {port} (from argument)" in r.stderr and '--port 0' in r.stderr


@pytest.mark.integration
def test_ui_on_a_tracking_server_points_to_its_own_ui(project, health_server):
    r = mlops_nb_cli('ui', env={**os.environ, 'MLFLOW_TRACKING_URI': health_server}, check=True)
    assert f"its UI is at {health_server}" in r.stdout
