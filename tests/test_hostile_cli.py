"""Hostile input to the `mlops-nb` commands, as a careless user or an attacker gives it: broken notebooks, bad numbers,
paths out of the project, unwritable places, a full disk. Each case must end in the documented exit code with an error
that names the bad value (and says the fix), never a traceback or "Internal error" (exit 70), and must lose nothing
the store already held. Most cases fail before any kernel starts; the few that start one are marked below.
"""
import json, os, shutil, subprocess
from pathlib import Path

import pytest

from conftest import mlops_nb_cli

pytestmark = pytest.mark.integration

NOTEBOOK = dict(nbformat=4, nbformat_minor=5, metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')),
                cells=[dict(cell_type='code', id='p', metadata=dict(tags=['parameters']), execution_count=None, outputs=[],
                            source="lr = 0.1\nepochs: int = 3\ndb_password: int = 0"),
                       dict(cell_type='code', id='b', metadata={}, execution_count=None, outputs=[],
                            source="import mlops_nb as mn\nmn.log_metric('before', 1.0)\nprint('ran', lr)")])


def _clean_env(cache_dir, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(('MLOPS_NB_', 'MLFLOW_'))}
    return env | {'MLOPS_NB_CACHE_DIR': str(cache_dir)} | extra


@pytest.fixture(scope='module')
def hostile(tmp_path_factory, cache_dir):
    "A project with one run already logged, and the broken files the cases point at."
    p = tmp_path_factory.mktemp('hostile')/'proj'
    p.mkdir()
    (p/'pyproject.toml').write_text('[project]\nname = "hostile"\n')
    (p/'ok.ipynb').write_text(json.dumps(NOTEBOOK))
    (p/'empty.ipynb').write_text('')
    (p/'truncated.ipynb').write_text(json.dumps(NOTEBOOK)[:70])
    (p/'text.ipynb').write_text('print("not a notebook")\n')
    (p/'list.ipynb').write_text('[1, 2, 3]')
    (p/'binary.ipynb').write_bytes(b'\x89PNG\r\n\x1a\n\xff\xfe')
    (p/'params.yaml').write_text('lr: 0.2\n')
    (p/'afile').write_text('a file, where a folder is expected\n')
    (p/'a.csv').write_text('x,y\n' + ''.join(f'{i},{i % 3}\n' for i in range(50)))
    (p/'broken-pyproject').mkdir()
    (p/'broken-pyproject'/'pyproject.toml').write_text('[project\nname = "x"\n')
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.store.client import ensure_store, open_client, experiment_id
    s = resolve_settings(project_dir=p, env=_clean_env(cache_dir))
    ensure_store(s)
    c = open_client(s)
    rid = c.create_run(experiment_id(c, s, s.experiment), run_name='logged-before').info.run_id
    c.log_metric(rid, 'auc', 0.91)
    c.set_terminated(rid, 'FINISHED')
    return p, rid, s


def _store_state(s):
    from mlops_nb.store.client import open_client
    c = open_client(s)
    runs = c.search_runs([e.experiment_id for e in c.search_experiments()])
    return {r.info.run_id: (r.info.status, dict(r.data.metrics)) for r in runs}


# (id, args, extra env, exit code, text the message must hold); a `{p}` in args or env is the project folder
CASES = [
    ('empty notebook', ['run', 'empty.ipynb'], {}, 7, "'empty.ipynb' is empty"),
    ('truncated notebook', ['run', 'truncated.ipynb'], {}, 7, "'truncated.ipynb' is not valid JSON"),
    ('python file as notebook', ['run', 'text.ipynb'], {}, 7, "'text.ipynb' is not valid JSON"),
    ('JSON that is no notebook', ['run', 'list.ipynb'], {}, 7, "'list.ipynb' is JSON but not a Jupyter notebook"),
    ('binary notebook', ['run', 'binary.ipynb'], {}, 7, "'binary.ipynb' is not a notebook: it is not UTF-8"),
    ('empty notebook path', ['run', ''], {}, 7, "No notebook given: the path is ''"),
    ('missing notebook with -f', ['run', 'missing.ipynb', '-f', 'params.yaml'], {}, 7, "No notebook at 'missing.ipynb'"),
    ('folder as notebook', ['run', 'broken-pyproject'], {}, 2, "'broken-pyproject' is a directory"),
    ('broken notebook in a sweep', ['sweep', 'truncated.ipynb', '-p', 'lr', '0.1,0.2'], {}, 7, "'truncated.ipynb' is not valid JSON"),
    ('sweep value list empty', ['sweep', 'ok.ipynb', '-p', 'lr', ''], {}, 2, "-p lr '' gives no values"),
    ('output outside the project', ['run', 'ok.ipynb', '--output', '/tmp/mlops-nb-hostile-out.ipynb'], {}, 2,
     "--output '/tmp/mlops-nb-hostile-out.ipynb' is outside the project"),
    ('output escaping with ..', ['run', 'ok.ipynb', '--output', '../../escaped.ipynb'], {}, 2, "--output '../../escaped.ipynb' is outside the project"),
    ('output not a notebook name', ['run', 'ok.ipynb', '--output', 'out.txt'], {}, 2, "--output 'out.txt' does not end in .ipynb"),
    ('output under a file', ['run', 'ok.ipynb', '--output', 'afile/out.ipynb'], {}, 2, "Cannot create output folder '{p}/afile'"),
    ('unknown --secret', ['run', 'ok.ipynb', '--secret', 'nope'], {}, 2, "--secret 'nope': ok.ipynb has no such parameter"),
    ('negative timeout', ['run', 'ok.ipynb', '--timeout', '-1'], {}, 2, "-1"),
    ('huge timeout text', ['run', 'ok.ipynb', '--timeout', '1e999x'], {}, 2, "1e999x"),
    ('unicode parameter name', ['run', 'ok.ipynb', '-p', 'lé', '1'], {}, 2, "Unknown parameter `lé`"),
    ('huge parameter value', ['run', 'ok.ipynb', '-p', 'epochs', '9' * 5000 + 'x'], {}, 2, "Parameter `epochs` = '99999"),
    ('artifact_root under a file', ['run', 'ok.ipynb'], {'MLOPS_NB_ARTIFACT_ROOT': '{p}/afile/artifacts'}, 3,
     "Bad setting `artifact_root` = '{p}/afile/artifacts'"),
    ('gate with a bad number', ['promote', 'm', '--to', 'champion', '--gate', 'auc>=1.2.3'], {}, 3, "'1.2.3' is not a number"),
    ('gate with no number', ['promote', 'm', '--to', 'champion', '--gate', 'auc>='], {}, 3, "Cannot read the gate 'auc>='"),
    ('expect that is no version', ['promote', 'm', '--to', 'champion', '--expect', 'abc'], {}, 2, "'abc' is not a version"),
    ('init on a broken pyproject', ['init', 'broken-pyproject'], {}, 3, "broken-pyproject/pyproject.toml is not valid TOML"),
    ('profile output under a file', ['profile', 'a.csv', '-o', 'afile/p.json'], {}, 2, "'afile/p.json' cannot be written: 'afile' is a file"),
    ('drift HTML under a file', ['drift', 'a.csv', 'a.csv', '--html', 'afile/r.html'], {}, 2, "'afile/r.html' cannot be written: 'afile' is a file"),
    ('drift profile into a folder', ['drift', 'a.csv', 'a.csv', '--save-profile', 'broken-pyproject'], {}, 2, "'broken-pyproject' is a directory"),
    ('quota estimate negative rows', ['quota', 'estimate', 'ok.ipynb', '--rows', '-5'], {}, 2, "-5"),
    ('reproduce an empty run id', ['reproduce', ''], {}, 8, "No run ''"),
    ('quota window nonsense', ['quota', 'usage', '--since', '∞d'], {}, 3, "Bad window '∞d'"),
]


@pytest.mark.parametrize('args,extra,code,needle', [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_gets_a_named_error(hostile, cache_dir, args, extra, code, needle):
    p, rid, s = hostile
    before = _store_state(s)
    fill = lambda x: x.replace('{p}', str(p))
    r = mlops_nb_cli(*map(fill, args), cwd=p, env=_clean_env(cache_dir, **{k: fill(v) for k, v in extra.items()}), timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == code, f"exit {r.returncode}, expected {code}:\n{out}"
    assert fill(needle) in out, out
    assert 'Traceback' not in out and 'Internal error' not in out, out
    assert r.returncode == 2 or 'Fix:' in out or 'Try ' in out, out  # our errors say the fix; click's say where the help is
    assert _store_state(s) == before  # nothing logged before is lost, and no run was started
    assert before[rid] == ('FINISHED', {'auc': 0.91})
    assert not (p/'.mlops'/'runs').exists() or not list((p/'.mlops'/'runs').iterdir())
    assert not Path('/tmp/mlops-nb-hostile-out.ipynb').exists() and not (p.parent.parent/'escaped.ipynb').exists()


def test_a_secret_parameter_with_a_bad_value_is_not_echoed(hostile, cache_dir):
    p, _, _ = hostile
    r = mlops_nb_cli('run', 'ok.ipynb', '-p', 'db_password', 'hunter2-not-an-int', cwd=p, env=_clean_env(cache_dir))
    assert r.returncode == 2 and 'Parameter `db_password` = *** is not an int' in r.stderr, r.stderr
    assert 'hunter2' not in r.stdout + r.stderr


def test_init_on_a_broken_pyproject_writes_nothing(hostile, cache_dir):
    p, _, _ = hostile
    mlops_nb_cli('init', 'broken-pyproject', cwd=p, env=_clean_env(cache_dir))
    assert sorted(x.name for x in (p/'broken-pyproject').iterdir()) == ['pyproject.toml']


# -- the few cases that start a kernel ---------------------------------------------------------------------------------------
def test_a_run_name_never_leaves_the_project(project, cache_dir):
    (project/'ok.ipynb').write_text(json.dumps(NOTEBOOK))
    for name in ('../../escape', '/etc/x'):  # more shapes: the unit test under `_file_name` in nbs/60_pipelines/61_run.ipynb
        r = mlops_nb_cli('run', 'ok.ipynb', '--name', name, '--no-html', '--json', cwd=project, timeout=240)
        assert r.returncode == 0, r.stderr
        out = Path(json.loads(r.stdout)['output'])
        assert out.parent == project/'.mlops'/'runs' and '/' not in out.name and '..' not in out.name, out  # slugged
    assert sorted(p.name.rsplit('-', 2)[0] for p in (project/'.mlops'/'runs').glob('*.ipynb')) == ['escape', 'etc-x']
    assert not (project.parent.parent/'escape-').exists() and not list(project.parent.parent.glob('escape*'))


def _mount_tmpfs(folder, *opts):
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', ','.join(opts), 'tmpfs', str(folder)], capture_output=True, text=True)
    if r.returncode: pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()})")


@pytest.mark.skipif(os.geteuid() != 0, reason="simulating a full disk needs a small tmpfs, and mounting one needs root")
def test_a_full_disk_under_run_is_exit_7_and_keeps_what_was_logged(tmp_path, env, cache_dir):
    disk = tmp_path/'disk'; disk.mkdir()
    _mount_tmpfs(disk, 'size=2m')
    try:
        (disk/'pyproject.toml').write_text('[project]\nname = "full"\n')
        nb = json.loads(json.dumps(NOTEBOOK))
        nb['cells'].append(dict(cell_type='code', id='big', metadata={}, execution_count=None, outputs=[],
                                source="for c in 'xyz': print(c * 400_000)"))  # the executed notebook outgrows the disk
        (disk/'full.ipynb').write_text(json.dumps(nb))
        r = mlops_nb_cli('run', 'full.ipynb', '--no-html', cwd=disk, timeout=240)
        out = r.stdout + r.stderr
        assert r.returncode == 7, out
        assert 'No space left on device (the disk is full)' in out and 'full-' in out and 'Traceback' not in out, out
        from mlops_nb.core.config import resolve_settings
        from mlops_nb.store.client import open_client
        c = open_client(resolve_settings(project_dir=disk))
        runs = c.search_runs([e.experiment_id for e in c.search_experiments()])
        assert len(runs) == 1 and runs[0].info.status == 'FAILED' and runs[0].data.metrics['before'] == 1.0  # logged before: kept
        kept = list((disk/'.mlops'/'runs').glob('*.ipynb'))
        assert len(kept) == 1 and json.loads(kept[0].read_text())['cells']  # the last whole copy, never half of one
    finally:
        subprocess.run(['umount', '-l', str(disk)], capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="a read-only folder for root needs a read-only mount, and mounting needs root")
def test_an_unwritable_output_folder_is_refused_before_the_kernel(project, tmp_path):
    ro = project/'readonly'; ro.mkdir()
    _mount_tmpfs(ro, 'ro', 'size=1m')
    try:
        (project/'ok.ipynb').write_text(json.dumps(NOTEBOOK))
        r = mlops_nb_cli('run', 'ok.ipynb', '--output', 'readonly/out.ipynb', cwd=project, timeout=60)
        assert r.returncode == 2 and f"The output folder '{ro}' is not writable" in r.stderr and 'Traceback' not in r.stderr, r.stderr
        assert not (project/'.mlops'/'runs').exists()
    finally:
        subprocess.run(['umount', '-l', str(ro)], capture_output=True)
