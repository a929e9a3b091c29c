"""Promotion governance on real registries: gates, approvals, audit records, rollback, and concurrent promotions of
one alias, on the embedded SQLite store, on PostgreSQL (a database URI: the advisory lock) and on an MLflow server
(the lease tag). PostgreSQL: see tests/test_team.py for how these tests find or start one; without it those cases skip."""
import json, subprocess, time
from pathlib import Path

import pytest

from conftest import BIN, mlops_nb_cli
from test_team import databases, server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration


def _pyproject(project, extra=''):
    (project/'pyproject.toml').write_text(f'[project]\nname = "demo-project"\n[tool.mlops_nb]\n{extra}\n')


def _versions(project, aucs, model='churn', schema='ok'):
    "Register one version per AUC, each from a finished run that logged it (and validated its data: tag `schema`)."
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.store.client import open_client
    s = resolve_settings(project_dir=project); c = open_client(s)
    exp = c.get_experiment_by_name('train') or c.get_experiment(c.create_experiment('train'))
    out = []
    for auc in aucs:
        r = c.create_run(exp.experiment_id)
        c.log_metric(r.info.run_id, 'auc', auc)
        if schema: c.set_tag(r.info.run_id, 'schema', schema)
        c.set_terminated(r.info.run_id)
        try: c.create_registered_model(model)
        except Exception: pass
        out.append((int(c.create_model_version(model, f"runs:/{r.info.run_id}/model", run_id=r.info.run_id).version), r.info.run_id))
    return c, out


def _alias(c, alias='champion', model='churn'):
    v = (c.get_registered_model(model).aliases or {}).get(alias)
    return None if v is None else int(v)


def _history(project, *extra):
    r = mlops_nb_cli('history', 'churn', '--json', *extra, cwd=project, check=True)
    return [json.loads(l) for l in r.stdout.splitlines()]


def test_gates_pass_or_refuse_with_a_table_of_gate_expected_actual(project):
    c, vs = _versions(project, [0.90, 0.93, 0.905])
    r = mlops_nb_cli('promote', 'churn@1', '--to', 'champion', '--gate', 'auc>=0.85', '--as', 'ana', '--reason', 'first model', cwd=project)
    assert r.returncode == 0 and 'churn@champion: v- -> v1 (promoted by ana)' in r.stdout, r.stdout + r.stderr
    r = mlops_nb_cli('promote', 'churn@3', '--to', 'champion', '--gate', 'auc>=champion+0.01', '--gate', 'data', '--as', 'bob', cwd=project)
    assert r.returncode == 15, r.stdout + r.stderr
    assert 'Promotion of churn v3 to `champion` refused: 1 of 2 gates failed.' in r.stderr
    row = next(l for l in r.stderr.splitlines() if l.startswith('auc>=champion+0.01'))
    assert row.split() == ['auc>=champion+0.01', '>=', '0.91', '(v1:', '0.9', '+0.01)', '0.905', 'NO'], row
    assert any(l.split()[0] == 'data' and l.split()[-1] == 'yes' for l in r.stderr.splitlines() if l.strip())
    assert _alias(c) == 1
    r = mlops_nb_cli('promote', f'churn@{vs[1][1]}', '--to', 'champion', '--gate', 'auc>=champion+0.01', '--json', cwd=project)  # by run id
    assert r.returncode == 0 and json.loads(r.stdout)['version'] == 2 and _alias(c) == 2, r.stdout + r.stderr
    acts = [(h['action'], h['from_version'], h['to_version']) for h in _history(project)]
    assert acts == [('promote', None, 1), ('refuse', 1, 3), ('promote', 1, 2)]
    r = mlops_nb_cli('promote', 'churn@7', '--to', 'champion', cwd=project)
    assert r.returncode == 15 and '`churn` has no version 7.' in r.stderr and 'Its versions: 1, 2, 3' in r.stderr
    r = mlops_nb_cli('promote', 'churn@2', '--to', 'champion', '--gate', 'auc => 0.9', cwd=project)
    assert r.returncode == 3 and "Cannot read the gate 'auc => 0.9'" in r.stderr


def test_an_alias_that_requires_an_approval_refuses_without_one(project):
    _pyproject(project, '[tool.mlops_nb.promotion.champion]\ngates = ["auc>=champion"]\napprovals = 1')
    c, _ = _versions(project, [0.90, 0.93, 0.95])
    r = mlops_nb_cli('promote', 'churn@1', '--to', 'champion', cwd=project)
    assert r.returncode == 15 and any(l.split()[:1] == ['approvals'] and l.split()[-1] == 'NO' for l in r.stderr.splitlines()), r.stderr
    assert 'mlops-nb approve churn@1 --to champion' in r.stderr and _alias(c) is None
    r = mlops_nb_cli('promote', 'churn@1', '--to', 'champion', '--approve', 'reviewed the eval report', '--as', 'ana', cwd=project)
    assert r.returncode == 0 and _alias(c) == 1, r.stderr
    mlops_nb_cli('approve', 'churn@2', '--to', 'champion', '--reason', 'checked the slices', '--as', 'bob', cwd=project, check=True)
    r = mlops_nb_cli('promote', 'churn@2', '--to', 'champion', '--as', 'ana', cwd=project)
    assert r.returncode == 0 and _alias(c) == 2, r.stderr
    approvals = [h for h in _history(project) if h['action'] == 'approve']
    assert [(a['who'], a['to_version'], a['reason']) for a in approvals] == [('ana', 1, 'reviewed the eval report'), ('bob', 2, 'checked the slices')]
    # An approval for another alias does not count.
    mlops_nb_cli('approve', 'churn@3', '--to', 'staging', '--reason', 'ok for staging', cwd=project, check=True)
    assert mlops_nb_cli('promote', 'churn@3', '--to', 'champion', cwd=project).returncode == 15


def test_approvals_count_people_not_names_and_free_text_cannot_forge_history(project):
    "One OS user approving twice, as Alice and as Bob, is one approval: approvals = 2 is refused, naming why."
    import getpass, socket
    _pyproject(project, '[tool.mlops_nb.promotion.champion]\napprovals = 2')
    c, _ = _versions(project, [0.90])
    forged = 'ok\n2020-01-01 00:00:00  promote   champion  v1 -> v9  root'
    for name in ('Alice', 'Bob'):
        mlops_nb_cli('approve', 'churn@1', '--to', 'champion', '--reason', forged, '--as', name, cwd=project, check=True)
    r = mlops_nb_cli('promote', 'churn@1', '--to', 'champion', cwd=project)
    me = f"{getpass.getuser()}@{socket.gethostname()}"
    assert r.returncode == 15 and _alias(c) is None, r.stdout + r.stderr
    row = next(l for l in r.stderr.splitlines() if l.startswith('approvals'))
    assert f'1 distinct identity: {me} (as Alice, Bob)' in row and 'one identity approving under several names counts once' in row and row.split()[-1] == 'NO'
    assert 'approvals count distinct OS or server users, not `--as` names' in r.stderr
    approvals = [h for h in _history(project) if h['action'] == 'approve']
    assert [(a['who'], a['identity']) for a in approvals] == [('Alice', me), ('Bob', me)]
    out = mlops_nb_cli('history', 'churn', cwd=project, check=True).stdout
    assert 'v1 -> v9' in out and not any(l.startswith('2020-01-01') for l in out.splitlines()), out  # escaped: on the approval's own line
    r = mlops_nb_cli('approve', 'churn@1', '--to', 'champion', '--reason', 'x', '--as', 'A' * 201, cwd=project)
    assert r.returncode == 15 and '`--as` is 201 characters long' in r.stderr and 'the limit is 200' in r.stderr and 'Traceback' not in r.stderr


def test_drift_and_data_gates_read_the_monitoring_and_training_runs(project):
    c, vs = _versions(project, [0.90, 0.92])
    (_, _), (v2, run2) = vs
    exp = c.create_experiment('monitor')
    ms = iter(range(int(time.time() * 1000), 2**62))  # each monitoring run starts 1 ms after the one before: "the newest" is defined
    def monitored(verdict):
        r = c.create_run(exp, start_time=next(ms)); c.log_param(r.info.run_id, 'reference', run2); c.set_tag(r.info.run_id, 'mlops_nb.drift.verdict', verdict)
        c.set_terminated(r.info.run_id)
    r = mlops_nb_cli('promote', 'churn@2', '--to', 'champion', '--gate', 'drift', cwd=project)
    assert r.returncode == 15 and f'none found for run {run2}' in r.stderr
    monitored('drift')
    r = mlops_nb_cli('promote', 'churn@2', '--to', 'champion', '--gate', 'drift', cwd=project)
    assert r.returncode == 15 and any(l.startswith('drift') and 'NO' in l and 'drift (run' in l for l in r.stderr.splitlines()), r.stderr
    monitored('stable')  # the newest monitoring run decides
    assert mlops_nb_cli('promote', 'churn@2', '--to', 'champion', '--gate', 'drift', cwd=project).returncode == 0
    _, [(v3, run3)] = _versions(project, [0.95], schema=None)  # trained without validating its data
    r = mlops_nb_cli('promote', 'churn@3', '--to', 'champion', '--gate', 'data', cwd=project)
    assert r.returncode == 15 and 'schema not checked' in r.stderr


def test_rollback_twice_in_a_row_walks_back_one_promotion_at_a_time(project):
    c, _ = _versions(project, [0.90, 0.91, 0.92])
    for v in (1, 2, 3): mlops_nb_cli('promote', f'churn@{v}', '--to', 'champion', cwd=project, check=True)
    r = mlops_nb_cli('rollback', 'churn', '--alias', 'champion', '--reason', 'incident 42', '--as', 'oncall', cwd=project)
    assert r.returncode == 0 and 'churn@champion: v3 -> v2 (rolled back by oncall)' in r.stdout and _alias(c) == 2
    r = mlops_nb_cli('rollback', 'churn', cwd=project)
    assert r.returncode == 0 and 'v2 -> v1' in r.stdout and _alias(c) == 1
    r = mlops_nb_cli('rollback', 'churn', cwd=project)
    assert r.returncode == 15 and 'nothing to roll back to: v1 is the first version promoted to it' in r.stderr and _alias(c) == 1
    r = mlops_nb_cli('history', 'churn', cwd=project, check=True)
    lines = r.stdout.splitlines()
    assert [l.split()[2] for l in lines[:-1]] == ['promote'] * 3 + ['rollback'] * 2 and 'incident 42' in lines[3] and lines[-1] == '5 record(s).'
    assert mlops_nb_cli('rollback', 'churn', '--alias', 'staging', cwd=project).returncode == 15


def test_a_crash_halfway_never_leaves_the_alias_on_nothing(project, monkeypatch):
    "A promotion or rollback that dies between its two writes leaves the alias on a version, and the next one repairs the record."
    from mlops_nb.models import promotion
    from mlops_nb.core.config import resolve_settings
    from mlflow import MlflowClient
    s = resolve_settings(project_dir=project)
    c, _ = _versions(project, [0.90, 0.91])
    promotion.promote('churn@1', 'champion', settings=s)
    class Crash(BaseException): pass
    real = MlflowClient.set_registered_model_alias
    def crash(*a, **k): raise Crash()
    monkeypatch.setattr(MlflowClient, 'set_registered_model_alias', crash)  # dies after the stack is written
    with pytest.raises(Crash): promotion.promote('churn@2', 'champion', settings=s)
    assert _alias(c) == 1 and c.get_registered_model('churn').tags['mlops_nb.alias.champion.stack'] == '1,2'
    monkeypatch.setattr(MlflowClient, 'set_registered_model_alias', real)
    with pytest.raises(promotion.PromotionError, match='nothing to roll back to'): promotion.rollback('churn', 'champion', settings=s)
    promotion.promote('churn@2', 'champion', settings=s)
    assert _alias(c) == 2 and c.get_registered_model('churn').tags['mlops_nb.alias.champion.stack'] == '1,2'
    monkeypatch.setattr(MlflowClient, 'set_registered_model_tag', crash)  # a rollback that dies after moving the alias
    with pytest.raises(Crash): promotion.rollback('churn', 'champion', settings=s)
    monkeypatch.undo()
    assert _alias(c) == 1
    with pytest.raises(promotion.PromotionError, match='nothing to roll back to'): promotion.rollback('churn', 'champion', settings=s)


@pytest.fixture(params=['sqlite', 'postgresql', 'server'])
def store(request, project):
    "The project's store: the embedded SQLite one, a PostgreSQL database, or an MLflow server on PostgreSQL."
    if request.param == 'postgresql':
        uri = request.getfixturevalue('databases')().replace('postgresql://', 'postgresql+psycopg://', 1)
        _pyproject(project, f'tracking_uri = "{uri}"')
    elif request.param == 'server':
        _pyproject(project, f'tracking_uri = "{request.getfixturevalue("server")}"')
    return request.param


def test_concurrent_promotions_of_one_alias_one_wins_and_the_audit_shows_both(project, store):
    c, _ = _versions(project, [0.90, 0.93, 0.94])
    mlops_nb_cli('promote', 'churn@1', '--to', 'champion', cwd=project, check=True)
    exe = str(BIN/'mlops-nb')
    procs = [subprocess.Popen([exe, 'promote', f'churn@{v}', '--to', 'champion', '--expect', '1', '--gate', 'auc>=champion', '--as', who],
                              cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for v, who in ((2, 'ana'), (3, 'bob'))]
    outs = [(p.wait(120), *p.communicate()) for p in procs]
    codes = sorted(o[0] for o in outs)
    assert codes == [0, 15], outs
    winner = 2 if outs[0][0] == 0 else 3
    loser_err = outs[1 if winner == 2 else 0][2]
    assert f'`champion` moved from v1 to v{winner}' in loser_err and 'while this promotion was being checked' in loser_err
    assert _alias(c) == winner
    tail = [(h['action'], h['from_version'], h['to_version']) for h in _history(project)][1:]
    assert sorted(tail) == sorted([('promote', 1, winner), ('refuse', winner, 5 - winner)]), tail


@pytest.mark.parametrize('kind', ['sqlite', 'postgresql'])
def test_twenty_races_for_one_alias_each_has_one_winner_and_a_loser_refused_by_its_expectation(project, kind, request):
    "The race above, 20 times in threads (each promotion its own lock holder): the loser is always refused for the moved "
    "alias, first, never by a gate judged against the new champion (when b wins, a fails `auc>=champion` against b)."
    import threading
    from mlops_nb.models import promotion
    from mlops_nb.core.config import resolve_settings
    if kind == 'postgresql':
        _pyproject(project, f'tracking_uri = "{request.getfixturevalue("databases")().replace("postgresql://", "postgresql+psycopg://", 1)}"')
    s = resolve_settings(project_dir=project)
    c, _ = _versions(project, [0.80] + [0.81 + 0.004 * i + d for i in range(20) for d in (0.0, 0.002)])  # each round beats the last
    promotion.promote('churn@1', 'champion', settings=s)
    for i in range(20):
        now, (a, b), out = _alias(c), (2 + 2 * i, 3 + 2 * i), {}
        go = threading.Barrier(2)
        def race(v):
            go.wait()
            try: out[v] = promotion.promote(f'churn@{v}', 'champion', gates=['auc>=champion'], expect=now, settings=s).version
            except promotion.PromotionError as e: out[v] = e.message
        ts = [threading.Thread(target=race, args=(v,)) for v in (a, b)]
        for t in ts: t.start()
        for t in ts: t.join(60)
        winner = next(v for v, o in out.items() if isinstance(o, int))
        loser = (a + b) - winner
        assert f'`champion` moved from v{now} to v{winner}' in out[loser] and _alias(c) == winner, (i, out)
