"""Settings: the precedence a user relies on, and errors that name key, value, source and fix."""
import json, os, socket
from pathlib import Path

import pytest

from mlops_nb.core.config import resolve_settings, check_store, find_project_dir, SETTINGS
from mlops_nb.core.errors import ConfigError, MlopsNbError
from conftest import mlops_nb_cli


def write_cfg(project, body):
    (project/'pyproject.toml').write_text('[project]\nname = "demo-project"\n[tool.mlops_nb]\n' + body)
    return project/'pyproject.toml'


def test_defaults_put_the_embedded_store_in_the_project(project):
    s = resolve_settings(env={})
    assert s.project_dir == str(project)
    assert s.tracking_uri == f"sqlite:///{project}/.mlops/mlflow.db"
    assert s.artifact_root == str(project/'.mlops'/'artifacts')
    assert s.experiment == 'demo-project'  # [project].name of the user's pyproject
    assert s.redact_secrets is True
    assert all(src == 'default' for k, src in s.sources.items() if k != 'project_dir')


def test_project_is_found_from_a_subfolder(project, monkeypatch):
    (project/'notebooks'/'eda').mkdir(parents=True)
    monkeypatch.chdir(project/'notebooks'/'eda')
    assert resolve_settings(env={}).project_dir == str(project)


def test_git_repo_without_pyproject_is_a_project(tmp_path):
    (tmp_path/'.git').mkdir(); (tmp_path/'sub').mkdir()
    assert find_project_dir(tmp_path/'sub') == tmp_path.resolve()


@pytest.mark.parametrize('key,file_value,env_value,arg_value', [
    ('experiment', '"file"', 'env', 'arg'),
    ('ui_port', '5001', '5002', 5003),
    ('redact_secrets', 'false', 'true', False),
    ('env_allowlist', '["A"]', 'B,C', ['D']),
])
def test_argument_beats_environment_beats_pyproject_beats_default(project, key, file_value, env_value, arg_value):
    spec = SETTINGS[key]
    var = spec.env_vars[0]
    pp = write_cfg(project, f'{key} = {file_value}\n')
    s = resolve_settings(env={})
    assert s.sources[key] == f'{pp} [tool.mlops_nb]'
    s = resolve_settings(env={var: env_value})
    assert (s[key], s.sources[key]) == (spec.parse(env_value), f'env {var}')
    s = resolve_settings(env={var: env_value}, **{key: arg_value})
    assert (s[key], s.sources[key]) == (arg_value, 'argument')


def test_mlflow_tracking_uri_is_honoured_but_ours_wins(project):
    s = resolve_settings(env={'MLFLOW_TRACKING_URI': 'http://127.0.0.1:5999'})
    assert (s.tracking_uri, s.sources['tracking_uri']) == ('http://127.0.0.1:5999', 'env MLFLOW_TRACKING_URI')
    s = resolve_settings(env={'MLFLOW_TRACKING_URI': 'http://127.0.0.1:5999', 'MLOPS_NB_TRACKING_URI': 'http://127.0.0.1:6000'})
    assert s.sources['tracking_uri'] == 'env MLOPS_NB_TRACKING_URI'


def test_empty_environment_variable_counts_as_unset(project):
    assert resolve_settings(env={'MLFLOW_TRACKING_URI': ''}).sources['tracking_uri'] == 'default'


def test_relative_paths_in_pyproject_are_relative_to_the_project(project, monkeypatch, tmp_path):
    write_cfg(project, 'tracking_uri = "sqlite:///runs/team.db"\nartifact_root = "runs/artifacts"\n')
    monkeypatch.chdir(tmp_path)  # a notebook kernel may run anywhere
    s = resolve_settings(project_dir=project, env={})
    assert s.tracking_uri == f"sqlite:///{project}/runs/team.db"
    assert s.artifact_root == str(project/'runs'/'artifacts')


def test_relative_paths_from_the_environment_are_relative_to_the_working_directory(project):
    s = resolve_settings(env={'MLOPS_NB_ARTIFACT_ROOT': 'out/art'})
    assert s.artifact_root == str(Path.cwd()/'out'/'art')


@pytest.mark.parametrize('body,needles', [
    ('experimnet = "x"\n', ["Unknown setting `experimnet`", "Did you mean `experiment`?", "pyproject.toml [tool.mlops_nb]"]),
    ('ui_port = "eighty"\n', ["`ui_port` = 'eighty'", "pyproject.toml [tool.mlops_nb]", "expected a whole number", "Fix:"]),
    ('ui_port = 70000\n', ["`ui_port` = 70000", "not a TCP port", "Fix: Use a port from 1 to 65535"]),
    ('redact_secrets = "sometimes"\n', ["`redact_secrets` = 'sometimes'", "true/false"]),
    ('env_allowlist = [1, 2]\n', ["`env_allowlist` = [1, 2]", "list of strings"]),
    ('tracking_uri = "./mlruns"\n', ["`tracking_uri` = './mlruns'", "file store", "sqlite:///"]),
    ('tracking_uri = "file:///tmp/mlruns"\n', ["file store"]),
    ('tracking_uri = "ftp://host/x"\n', ["unknown scheme `ftp`", "http://"]),
    ('tracking_uri = "sqlite://x.db"\n', ["three slashes"]),
])
def test_bad_values_in_pyproject_name_key_value_source_and_fix(project, body, needles):
    write_cfg(project, body)
    with pytest.raises(ConfigError) as e: resolve_settings(env={})
    for n in needles: assert n in str(e.value)


def test_a_string_is_a_comma_separated_list(project):
    write_cfg(project, 'env_allowlist = "HOME, LANG"\n')
    assert resolve_settings(env={}).env_allowlist == ['HOME', 'LANG']


def test_bad_value_in_environment_names_the_variable(project):
    with pytest.raises(ConfigError, match=r"`ui_port` = 'abc' \(from env MLOPS_NB_UI_PORT\)"):
        resolve_settings(env={'MLOPS_NB_UI_PORT': 'abc'})


def test_unknown_environment_variable_is_caught_with_a_suggestion(project):
    with pytest.raises(ConfigError, match="MLOPS_NB_TRACKNG_URI.*Did you mean `MLOPS_NB_TRACKING_URI`"):
        resolve_settings(env={'MLOPS_NB_TRACKNG_URI': 'x'})


def test_unknown_argument_is_an_error(project):
    with pytest.raises(ConfigError, match="Unknown setting `experiments`.*Did you mean `experiment`"):
        resolve_settings(env={}, experiments='x')


def test_invalid_toml_names_the_file(project):
    (project/'pyproject.toml').write_text('[tool.mlops_nb\nexperiment = "x"\n')
    with pytest.raises(ConfigError, match=r"pyproject.toml is not valid TOML.*line 1"):
        resolve_settings(env={})


def test_missing_project_dir_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such folder"):
        resolve_settings(project_dir=tmp_path/'nope', env={})


def test_config_errors_are_mlops_nb_errors_and_value_errors():
    assert issubclass(ConfigError, MlopsNbError) and issubclass(ConfigError, ValueError)


def test_resolving_never_writes_the_environment(project):
    before = dict(os.environ)
    resolve_settings(env={'MLOPS_NB_EXPERIMENT': 'x'}, tracking_uri='http://127.0.0.1:1')
    assert dict(os.environ) == before


# --- reachability -------------------------------------------------------------------------------------------

def _closed_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def test_dead_tracking_server_is_reported_with_the_fix(project):
    port = _closed_port()
    s = resolve_settings(env={'MLFLOW_TRACKING_URI': f'http://127.0.0.1:{port}'})
    with pytest.raises(ConfigError) as e: check_store(s, timeout=2)
    msg = str(e.value)
    assert f"http://127.0.0.1:{port}" in msg and "env MLFLOW_TRACKING_URI" in msg and "mlflow server" in msg


def test_live_http_server_passes_the_check(project, health_server):
    check_store(resolve_settings(env={}, tracking_uri=health_server))


def test_database_uri_is_checked_by_connecting_and_the_password_never_shown(project):
    port = _closed_port()
    s = resolve_settings(env={}, tracking_uri=f'postgresql://ml:hunter2@127.0.0.1:{port}/mlflow')
    with pytest.raises(ConfigError) as e: check_store(s, timeout=2)
    assert f"127.0.0.1:{port}" in str(e.value) and 'hunter2' not in str(e.value)
    with socket.socket() as listener:  # something that accepts TCP but is no database: refused, naming host, port and database
        listener.bind(('127.0.0.1', 0)); listener.listen()
        with pytest.raises(ConfigError, match="cannot connect to 127.0.0.1:.* as PostgreSQL database `db`"):
            check_store(resolve_settings(env={}, tracking_uri=f'postgresql://ml:pw@127.0.0.1:{listener.getsockname()[1]}/db'), timeout=1)


@pytest.mark.postgres
def test_a_real_postgresql_passes_and_a_missing_database_is_named(project):
    check_store(resolve_settings(env={}, tracking_uri='postgresql+psycopg://postgres@127.0.0.1:5432/test'))
    with pytest.raises(ConfigError, match="no_such_db") as e:
        check_store(resolve_settings(env={}, tracking_uri='postgresql://postgres@127.0.0.1:5432/no_such_db'))
    assert 'createdb' in str(e.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write read-only folders")
def test_unwritable_sqlite_folder_is_reported(project, tmp_path):
    ro = tmp_path/'ro'; ro.mkdir(); ro.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="not writable"):
            check_store(resolve_settings(env={}, tracking_uri=f'sqlite:///{ro}/m.db'))
    finally: ro.chmod(0o700)


def test_sqlite_folder_under_a_file_is_reported(project):
    (project/'afile').write_text('x')
    with pytest.raises(ConfigError, match=r"cannot create folder .*afile"):
        check_store(resolve_settings(env={}, tracking_uri=f'sqlite:///{project}/afile/sub/m.db'))


# --- mlops-nb config ------------------------------------------------------------------------------------------

@pytest.mark.integration
def test_config_command_shows_value_and_source(project):
    write_cfg(project, 'experiment = "churn"\n')
    env = {**os.environ, 'MLOPS_NB_UI_PORT': '5055'}
    r = mlops_nb_cli('config', cwd=project, env=env, check=True)
    lines = {l.split()[0]: l for l in r.stdout.splitlines() if l.strip()}
    assert 'churn' in lines['experiment'] and 'pyproject.toml [tool.mlops_nb]' in lines['experiment']
    assert '5055' in lines['ui_port'] and 'env MLOPS_NB_UI_PORT' in lines['ui_port']
    assert 'store ok' in r.stdout and (project/'.mlops').is_dir()


@pytest.mark.integration
def test_config_json_is_parseable_and_redacts_passwords(project):
    env = {**os.environ, 'MLOPS_NB_TRACKING_URI': 'postgresql://ml:hunter2@127.0.0.1:1/db'}
    r = mlops_nb_cli('config', '--json', '--no-check', cwd=project, env=env, check=True)
    out = json.loads(r.stdout)
    assert out['tracking_uri'] == {'value': 'postgresql://ml:***@127.0.0.1:1/db', 'source': 'env MLOPS_NB_TRACKING_URI'}
    assert 'hunter2' not in r.stdout + r.stderr


@pytest.mark.integration
def test_config_command_fails_with_exit_3_and_no_traceback(project):
    write_cfg(project, 'ui_prot = 1\n')
    r = mlops_nb_cli('config', cwd=project)
    assert r.returncode == 3
    assert "Unknown setting `ui_prot`" in r.stderr and "Did you mean `ui_port`" in r.stderr
    assert 'Traceback' not in r.stderr
    r = mlops_nb_cli('--debug', 'config', cwd=project)
    assert r.returncode != 0 and 'Traceback' in r.stderr


@pytest.mark.integration
def test_config_command_reports_unreachable_server_with_exit_3(project):
    env = {**os.environ, 'MLFLOW_TRACKING_URI': f'http://127.0.0.1:{_closed_port()}'}
    r = mlops_nb_cli('config', cwd=project, env=env)
    assert r.returncode == 3 and 'no tracking server answers' in r.stderr
    assert mlops_nb_cli('config', '--no-check', cwd=project, env=env).returncode == 0
