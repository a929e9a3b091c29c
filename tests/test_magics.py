"""`%mlops` in a real IPython shell: each verb, and argument errors as UsageErrors that say what is allowed."""
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import mlops_nb as mn
from mlops_nb.tracking import runs as tracking
from mlops_nb.core.config import resolve_settings
from mlops_nb.store.client import open_client


@pytest.fixture
def ip(project):
    shell = InteractiveShell.instance()
    shell.run_line_magic('load_ext', 'mlops_nb')
    tracking._tracker(resolve_settings())
    yield shell
    tracking._State.runs.clear()
    if tracking._State.tracker: tracking._State.tracker.close(timeout=5)
    tracking._State.tracker = None


@pytest.mark.integration
def test_track_log_status_stop(ip, capsys):
    ip.run_line_magic('mlops', 'track --experiment m --name first --tag team=ml --system-metrics 0')
    out = capsys.readouterr().out
    assert "Tracking run" in out and "experiment 'm'" in out
    ip.run_line_magic('mlops', 'log acc=0.75 model=lgbm --step 2')
    assert mn.active_run().wait_for_id(60)  # the session's first store: the template is built (about 4 s)
    ip.run_line_magic('mlops', 'status')
    out = capsys.readouterr().out
    assert 'run ' in out and 'backlog' in out and 'store ' in out
    assert 'no MLflow UI is running: `%mlops ui` starts one' in out  # never a link to a port nothing listens on
    run = mn.active_run()
    ip.run_line_magic('mlops', 'stop --status failed')
    assert mn.sync(30)
    r = open_client(resolve_settings()).get_run(run.run_id)
    assert (r.info.status, r.data.params['model'], r.data.tags['team']) == ('FAILED', 'lgbm', 'ml')
    assert r.data.metrics['acc'] == 0.75


@pytest.mark.integration
def test_cell_magic_runs_a_nested_run_and_keeps_the_parent(ip):
    ip.run_line_magic('mlops', 'track --experiment m --system-metrics 0')
    parent = mn.active_run()
    ip.run_cell_magic('mlops', 'track --name step1', "import mlops_nb as mn\nmn.log_metric('inner', 3)")
    assert mn.active_run() is parent
    ip.run_line_magic('mlops', 'stop'); assert mn.sync(30)
    c = open_client(resolve_settings())
    child = c.search_runs([c.get_experiment_by_name('m').experiment_id], filter_string="tags.`mlflow.parentRunId` = '%s'" % parent.run_id)
    assert [r.data.metrics for r in child] == [{'inner': 3.0}]


@pytest.mark.integration
def test_runs_table_lists_recent_runs_with_metrics(ip):
    for i in range(3):
        ip.run_line_magic('mlops', f'track --experiment tbl --name r{i} --system-metrics 0')
        ip.run_line_magic('mlops', f'log score={i}')
    ip.run_line_magic('mlops', 'stop'); assert mn.sync(30)
    df = ip.run_line_magic('mlops', 'runs --last 2 --experiment tbl')
    assert list(df['name']) == ['r2', 'r1'] and list(df['score']) == [2.0, 1.0]


@pytest.mark.parametrize('line,needle', [
    ('stop --status maybe', "'maybe' is not one of 'finished', 'failed', 'killed'"),
    ('log acc', "expected KEY=VALUE"),
    ('frobnicate', "no such verb 'frobnicate'"),
    ('serve churn', "no such verb 'serve' \\(`mlops-nb serve` runs it in a terminal\\)"),
    ('drift a b --fail-on maybe', "'maybe' is not one of 'drift', 'minor', 'never'"),
    ('runs --last 0', "0 is not in the range x>=1"),
    ('track --tag novalue', "expected KEY=VALUE"),
    ('log x=1', "No active run"),
    ('track --experiment "unclosed', "No closing quotation"),
])
@pytest.mark.integration
def test_argument_errors_are_usage_errors(ip, line, needle):
    with pytest.raises(UsageError, match=needle): ip.run_line_magic('mlops', line)


@pytest.mark.integration
def test_only_track_is_a_cell_magic(ip):
    with pytest.raises(UsageError, match="only `track` works as a cell magic"): ip.run_cell_magic('mlops', 'status', 'x = 1')


@pytest.mark.slow
@pytest.mark.integration
def test_ui_starts_the_mlflow_ui_and_every_link_points_at_its_port(ip, capsys):
    import json, os, signal, urllib.request
    from IPython.utils.capture import capture_output
    from mlops_nb.store.client import ui_file
    ip.run_line_magic('mlops', 'track --experiment m --name linked --system-metrics 0')
    run = mn.active_run()
    assert run.wait_for_id(60)
    capsys.readouterr()
    try:
        ip.run_line_magic('mlops', 'ui')  # a free port, not 5000
        out = capsys.readouterr().out
        url = out.split('MLflow UI: ')[1].split()[0]
        assert f"this run:  {url}/#/experiments/{run.experiment_id}/runs/{run.run_id}" in out, out
        ip.run_line_magic('mlops', 'ui')  # the one running is found, not a second one started
        assert capsys.readouterr().out.split('MLflow UI: ')[1].split()[0] == url
        with capture_output() as cap: ip.run_line_magic('mlops', 'open')
        assert f'href="{url}/#/experiments/{run.experiment_id}/runs/{run.run_id}"' in cap.outputs[-1].data['text/html']
        ip.run_line_magic('mlops', 'status')
        assert f"link       {url}/#/experiments/{run.experiment_id}/runs/{run.run_id}" in capsys.readouterr().out
        with urllib.request.urlopen(f"{url}/ajax-api/2.0/mlflow/runs/get?run_id={run.run_id}", timeout=30) as r:
            assert json.loads(r.read())['run']['info']['run_name'] == 'linked'  # the UI at that port serves this run
    finally:
        try: os.killpg(json.loads(ui_file(run.tracker.settings).read_text())['pid'], signal.SIGTERM)
        except (OSError, ValueError, KeyError): pass
        ip.run_line_magic('mlops', 'stop')


@pytest.mark.integration
def test_diff_shows_what_differs_between_two_runs(ip, capsys):
    ids = []
    for lr, seed in ((0.1, 1), (0.2, 1)):
        ip.run_line_magic('mlops', f'track --experiment d --system-metrics 0')
        mn.seed(seed)
        ip.run_line_magic('mlops', f'log lr={lr} --param')
        ip.run_line_magic('mlops', f'log acc={lr * 4}')
        ids.append(mn.active_run())
        ip.run_line_magic('mlops', 'stop')
    assert mn.sync(30)
    capsys.readouterr()
    ip.run_line_magic('mlops', f'diff {ids[0].run_id} {ids[1].run_id}')
    out = capsys.readouterr().out
    assert '[params]' in out and '[metrics]' in out and 'lr' in out and '0.1' in out and '0.2' in out
    assert '[packages]' not in out and '[seeds]' not in out  # same process, same seed: nothing to say there
    with pytest.raises(UsageError, match="No run 'nope'"): ip.run_line_magic('mlops', f'diff nope {ids[0].run_id}')


@pytest.mark.integration
def test_promote_moves_an_alias_through_its_gates_and_refuses_with_the_table(ip):
    from test_promotion import _versions, _alias
    c, _ = _versions(resolve_settings().project_dir, [0.90, 0.88])
    res = ip.run_line_magic('mlops', 'promote churn@1 --to champion --as ana --reason "first"')
    assert (res.version, res.from_version, res.record.who) == (1, None, 'ana') and _alias(c) == 1
    with pytest.raises(UsageError) as e: ip.run_line_magic('mlops', 'promote churn@2 --to champion --gate auc>=champion')
    assert 'refused: 1 of 1 gates failed' in str(e.value) and 'auc>=champion' in str(e.value) and _alias(c) == 1
    with pytest.raises(UsageError, match="Missing option '--to'"): ip.run_line_magic('mlops', 'promote churn@2')


@pytest.mark.integration
def test_runs_shows_only_the_columns_that_differ_children_under_parents_and_all_with_a_flag(ip, capsys):
    for lr in (0.1, 0.2):
        ip.run_line_magic('mlops', f'track --experiment cols --name lr{lr} --system-metrics 0')
        ip.run_line_magic('mlops', f'log lr={lr} seed=7 --param')
        ip.run_line_magic('mlops', f'log acc={lr * 4}')
        if lr == 0.2: ip.run_cell_magic('mlops', 'track --name child', "import mlops_nb as mn\nmn.log_metric('acc', 0.5)")
    ip.run_line_magic('mlops', 'stop')  # no sync: `%mlops runs` reads through the read barrier
    capsys.readouterr()
    df = ip.run_line_magic('mlops', 'runs --experiment cols')
    assert capsys.readouterr().out.startswith("Experiment 'cols' (")  # which experiment the table shows
    assert list(df.columns) == ['run_id', 'name', 'status', 'start', 'parent', 'lr', 'acc']  # seed is the same everywhere
    assert list(df['name']) == ['lr0.2', 'child', 'lr0.1'] and df['parent'][1] == df['run_id'][0]
    assert list(df['acc']) == [0.8, 0.5, 0.4] and list(df['lr'].fillna('-')) == ['0.2', '-', '0.1']
    assert 'seed' in ip.run_line_magic('mlops', 'runs --experiment cols --all').columns
    with pytest.raises(UsageError, match="No experiment 'nope'"): ip.run_line_magic('mlops', 'runs --experiment nope')


@pytest.mark.integration
def test_runs_and_diff_render_as_a_widget_and_a_table_where_widgets_show(ip, monkeypatch):
    from IPython.utils.capture import capture_output
    from mlops_nb.magics import MlopsMagics
    ids = []
    for lr in (0.1, 0.3):
        ip.run_line_magic('mlops', 'track --experiment w --system-metrics 0')
        ip.run_line_magic('mlops', f'log lr={lr} --param'); ip.run_line_magic('mlops', f'log loss={lr}')
        ids.append(mn.active_run()); ip.run_line_magic('mlops', 'stop')
    monkeypatch.setattr(MlopsMagics, '_widgets', lambda self: True)  # as in a Jupyter kernel
    w = ip.run_line_magic('mlops', 'runs --experiment w')
    assert type(w).__name__ == 'RunsWidget' and [c['key'] for c in w.columns] == ['lr', 'loss']
    assert w.experiment.startswith('w (') and [r['params']['lr'] for r in w.rows] == ['0.3', '0.1']
    w.selected = [ids[0].run_id]  # what ticking a run in the browser sends
    assert w.curves == {ids[0].run_id: {'loss': [[0, 0.1]]}}
    assert "Experiment 'w'" in w._repr_mimebundle_()[0]['text/plain']  # a front end without widgets shows the text table
    with capture_output() as cap: ip.run_line_magic('mlops', f'diff {ids[0].run_id} {ids[1].run_id}')
    out = cap.outputs[-1].data
    assert '>params</th>' in out['text/html'] and '>0.1</td>' in out['text/html'] and '[params]' in out['text/plain']


# -- one grammar: the CLI and the magics parse each shared verb with the same definition ----------------------------------
BAD = ['drift a.csv b.csv --fail-on sometimes', 'drift a.csv b.csv --fail-om minor', 'drift a.csv', 'promote churn@2',
       'promote churn --to champion --expect abc', 'quota estimate t.ipynb --rows -5', 'quota estimate t.ipynb -p n',
       'diff onlyone', 'reproduce r1 --tolerance -1', 'runs --last x', 'ui --port 70000', 'sync --timeout -1', 'status --jsn']


@pytest.fixture
def bare_ip():
    "A shell with the extension loaded and no tracker: parsing starts no process."
    shell = InteractiveShell.instance()
    shell.run_line_magic('load_ext', 'mlops_nb')
    return shell


@pytest.mark.parametrize('line', BAD)
def test_bad_input_gets_the_same_error_from_the_cli_and_the_magic(bare_ip, line):
    "The CLI prints usage, `Error: <message>` and exits 2; the magic says `%mlops VERB: <message>` in one line."
    import shlex
    from click.testing import CliRunner
    from mlops_nb.cli import cli
    r = CliRunner().invoke(cli, shlex.split(line), prog_name='mlops-nb')
    assert r.exit_code == 2, r.output
    message = r.output.split('Error: ', 1)[1].strip()
    with pytest.raises(UsageError) as e: bare_ip.run_line_magic('mlops', line)
    verb = ' '.join(w for w in line.split()[:2] if w in ('drift', 'promote', 'quota', 'estimate', 'diff', 'reproduce', 'runs', 'ui', 'sync', 'status'))
    assert str(e.value) == f"%mlops {verb}: {message} (`%mlops {verb} --help` lists its options.)"
    assert '\n' not in str(e.value) and 'Traceback' not in str(e.value)


def test_every_shared_verb_has_the_same_options_in_the_cli_and_the_magic():
    import click
    from mlops_nb.cli import cli
    from mlops_nb.verbs import SHARED, find
    def opts(cmd): return {(p.name, tuple(getattr(p, 'opts', ())), str(p.type), repr(p.default), getattr(p, 'help', None)) for p in cmd.params}
    for name in SHARED:
        spec, cmd = find(name), cli.commands[name]
        assert opts(spec) <= opts(cmd) and cmd.help == spec.help, name
        assert {p.name for p in cmd.params} - {p.name for p in spec.params} <= ({'serve', 'idle'} if name == 'sync' else set()), name
        if isinstance(spec, click.Group):
            for sub in spec.commands: assert opts(spec.commands[sub]) == opts(cmd.commands[sub]), f"{name} {sub}"


def test_help_of_a_verb_is_printed_not_raised(bare_ip, capsys):
    ip = bare_ip
    ip.run_line_magic('mlops', 'drift --help')
    out = capsys.readouterr().out
    assert out.startswith('Usage: %mlops drift [OPTIONS] REFERENCE CURRENT') and '--fail-on [drift|minor|never]' in out and '--performance' in out
    ip.run_line_magic('mlops', '--help')
    out = capsys.readouterr().out
    assert 'Usage: %mlops [OPTIONS] COMMAND' in out and 'track' in out and 'drift' in out


def _drift_frames():
    import numpy as np, pandas as pd
    rng = np.random.default_rng(0)
    ref = pd.DataFrame(dict(x=rng.normal(0, 1, 800), y=rng.normal(0, 1, 800)))
    cur = pd.DataFrame(dict(x=rng.normal(1.0, 1, 800), y=rng.normal(0, 1, 800)))
    return ref, cur


def _monitor_runs(ip, experiment, n=3):
    "`n` finished runs that logged a performance estimate, as `mn.estimate_performance(...).log()` logs it."
    ids = []
    for i in range(n):
        ip.run_line_magic('mlops', f'track --experiment {experiment} --name monitor --system-metrics 0')
        mn.log_metrics({'estimated/accuracy': 0.9 - 0.05 * i, 'estimated/accuracy_lower': 0.86 - 0.05 * i, 'estimated/accuracy_upper': 0.94 - 0.05 * i,
                        'reference/accuracy': 0.9, 'reference/accuracy_lower': 0.87, 'reference/accuracy_upper': 0.93, 'realized/accuracy': 0.89 - 0.06 * i})
        ids.append(mn.active_run()); ip.run_line_magic('mlops', 'stop')
    return ids


@pytest.mark.integration
def test_drift_magic_passes_the_runs_performance_estimates(ip, monkeypatch, capsys):
    from mlops_nb.magics import MlopsMagics
    ids = _monitor_runs(ip, 'monitored')
    ip.user_ns['ref'], ip.user_ns['cur'] = _drift_frames()
    monkeypatch.setattr(MlopsMagics, '_widgets', lambda self: True)  # as in a Jupyter kernel
    ip.run_line_magic('mlops', 'track --experiment monitored --name check --system-metrics 0')  # the active run's experiment
    w = ip.run_line_magic('mlops', 'drift ref cur')
    assert type(w).__name__ == 'DriftWidget' and w.report.verdict == 'drift'
    assert list(w.history['run_id']) == [r.run_id for r in ids]  # oldest first, only the runs that logged estimates
    assert list(w.history['estimated/accuracy']) == pytest.approx([0.9, 0.85, 0.8])
    assert w.metric.options == ('accuracy',)
    names = [t.name for t in w.perf.children[0].data]
    assert 'estimated (no labels)' in names and 'realized (labels)' in names  # estimate and realized, over time
    assert list(w.perf.children[0].data[names.index('realized (labels)')].y) == pytest.approx([0.89, 0.83, 0.77])
    ip.run_line_magic('mlops', 'stop')
    # no active run: --performance names the experiment; `none` turns it off; a wrong name is an error naming it
    w = ip.run_line_magic('mlops', 'drift ref cur --performance monitored')
    assert len(w.history) == 3
    assert ip.run_line_magic('mlops', 'drift ref cur --performance none').history is None
    with pytest.raises(UsageError, match="No experiment 'nope'"): ip.run_line_magic('mlops', 'drift ref cur --performance nope')
    # --fail-on fails the cell, after showing the report, with one line
    with pytest.raises(UsageError, match=r"^%mlops drift: DRIFT.*\(--fail-on minor\)\.$"): ip.run_line_magic('mlops', 'drift ref cur --fail-on minor --static')


@pytest.mark.integration
def test_drift_html_of_the_cli_charts_the_same_performance(ip, tmp_path):
    from click.testing import CliRunner
    from mlops_nb.cli import cli
    _monitor_runs(ip, 'monitored-cli', n=2)
    ref, cur = _drift_frames()
    ref.to_csv(tmp_path/'ref.csv', index=False); cur.to_csv(tmp_path/'cur.csv', index=False)
    project = str(resolve_settings().project_dir)
    args = ['drift', str(tmp_path/'ref.csv'), str(tmp_path/'cur.csv'), '--project-dir', project, '--fail-on', 'never']
    r = CliRunner().invoke(cli, [*args, '--html', str(tmp_path/'a.html'), '--performance', 'monitored-cli'])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, [*args, '--html', str(tmp_path/'b.html'), '--performance', 'none'])
    with_perf, without = (tmp_path/'a.html').read_text(), (tmp_path/'b.html').read_text()
    assert with_perf.count("data-figure='chart") == without.count("data-figure='chart") + 1  # the performance chart
    assert 'estimated without labels' in with_perf and 'estimated without labels' not in without
