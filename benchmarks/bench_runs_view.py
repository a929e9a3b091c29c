"""The runs view and the notebook page: what they cost next to their peers, measured in the same run.

    python benchmarks/bench_runs_view.py            # ~1-2 minutes
    python benchmarks/bench_runs_view.py --smoke    # ~15 s: every figure once, small (so it cannot rot)

Cell hook   a tracked cell's bookkeeping (`CellHistory.pre`/`post`: timing, stdout/stderr kept, the result's repr)
            around a cell that prints 20 lines, vs the same cell with no hook; alternating pairs, median per cell.
                                                                         Target: <= 50 us added per cell.
Page        `notebook_html` (ours, no nbconvert) vs nbconvert's `HTMLExporter` on the same executed notebook
            (`--cells` code cells with outputs and one traceback): median seconds, ratio, and page sizes.
Table       `runs_data` (read barrier, tree order, differing columns, links) for `--runs` runs vs MLflow's own
            `MlflowClient.search_runs` of the same runs, alternating: median seconds, ratio.
Curves      what the browser is sent for a run of `--steps` steps: points per curve (bounded at 500).
"""
import argparse, io, json, os, statistics, sys, tempfile, time
from pathlib import Path
from types import SimpleNamespace as NS


def med(xs): return statistics.median(xs)


def bench_cell_hook(n):
    from mlops_nb.tracking.session import CellHistory
    def cell():
        for i in range(20): print(f"epoch {i}: loss 0.{i:03d}")
        return 42
    real, sys.stdout = sys.stdout, io.StringIO()  # what the cell prints goes nowhere, the same in both arms
    try:
        h, bare, hooked = CellHistory(), [], []
        for i in range(n):  # alternating pairs: the machine's load hits both arms alike
            t = time.perf_counter(); cell(); bare.append(time.perf_counter() - t)
            t = time.perf_counter()
            h.pre(NS(cell_id=f"c{i}", raw_cell='train()')); r = cell()
            h.post(NS(error_in_exec=None, error_before_exec=None, execution_count=i, result=r))
            hooked.append(time.perf_counter() - t)
    finally: sys.stdout = real
    assert h.cells[-1]['outputs'][0]['text'].count('epoch') == 20, "the hook lost the cell's output"
    add = (med(hooked) - med(bare)) * 1e6
    print(f"Cell hook   bare cell {med(bare)*1e6:.1f} us, tracked {med(hooked)*1e6:.1f} us: +{add:.1f} us per cell "
          f"({n} pairs)  target <= 50 us: {'PASS' if add <= 50 else 'FAIL'}")


def executed(cells):
    nb = dict(nbformat=4, nbformat_minor=5, metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')), cells=[])
    for i in range(cells):
        out = [dict(output_type='stream', name='stdout', text=''.join(f"step {j} loss {1/(j+1):.4f}\n" for j in range(30))),
               dict(output_type='execute_result', execution_count=i + 1, metadata={}, data={'text/plain': repr(list(range(50)))})]
        if i == cells // 2: out.append(dict(output_type='error', ename='ValueError', evalue='bad', traceback=['\x1b[31mValueError\x1b[0m', 'Traceback: ...'] * 10))
        nb['cells'].append(dict(cell_type='code', id=f"c{i}", metadata={}, execution_count=i + 1, outputs=out,
                                source=f"for step in range(30):\n    print(f'step {{step}} loss {{1/(step+1):.4f}}')\nlist(range(50))"))
    return nb


def bench_page(cells, repeat):
    from mlops_nb.tracking.session import notebook_html
    from mlops_nb.core.redact import redact_text
    nb = executed(cells)
    try:
        import nbformat
        from nbconvert import HTMLExporter
        exporter, node = HTMLExporter(), nbformat.from_dict(nb)
        exporter.from_notebook_node(node)  # its templates load once, outside the timings
    except ImportError: exporter = None
    ours, peer = [], []
    for _ in range(repeat):
        t = time.perf_counter(); page = notebook_html(nb, 'bench', redact=redact_text); ours.append(time.perf_counter() - t)
        if exporter:
            t = time.perf_counter(); body, _ = exporter.from_notebook_node(node); peer.append(time.perf_counter() - t)
    assert page.count('step 29 loss') == cells and 'ValueError' in page, "the page lost outputs"
    line = f"Page        {cells} cells: notebook_html {med(ours)*1e3:.1f} ms ({len(page)/1024:.0f} kB, redacted)"
    if peer: line += f", nbconvert HTMLExporter {med(peer)*1e3:.1f} ms ({len(body)/1024:.0f} kB, not redacted): ratio {med(ours)/med(peer):.2f}"
    print(line)


def bench_table(runs, steps, repeat):
    os.environ.pop('MLFLOW_TRACKING_URI', None)
    tmp = Path(tempfile.mkdtemp(prefix='bench-runs-view-'))
    (tmp/'pyproject.toml').write_text('[project]\nname = "bench"\n')
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.store.client import open_client
    from mlops_nb.tracking.runs_view import runs_data, metric_curves
    s = resolve_settings(project_dir=tmp, env={}, cache_dir=str(tmp/'cache'))
    c = open_client(s)
    from mlflow.entities import Metric, Param
    eid = c.create_experiment('bench')
    now = int(time.time() * 1000)
    for i in range(runs):
        r = c.create_run(eid, run_name=f"r{i}")
        c.log_batch(r.info.run_id, params=[Param('lr', str(0.01 * (i % 7))), Param('seed', '1')],
                    metrics=[Metric('auc', 0.8 + (i % 11) / 100, now, 0), Metric('system/run_cpu_seconds', 1.0, now, 0)])
        c.set_terminated(r.info.run_id)
    long = c.create_run(c.create_experiment('bench-long'), run_name='long').info.run_id
    for b in range(0, steps, 1000): c.log_batch(long, metrics=[Metric('loss', 1 / (k + 1), now, k) for k in range(b, min(steps, b + 1000))])
    ours, peer = [], []
    for _ in range(repeat):
        t = time.perf_counter(); c.search_runs([eid], max_results=runs, order_by=['attributes.start_time DESC']); peer.append(time.perf_counter() - t)
        t = time.perf_counter(); d = runs_data(s, 'bench', last=runs); ours.append(time.perf_counter() - t)
    assert len(d.rows) == runs and [x['key'] for x in d.columns] == ['lr', 'auc'], d.columns
    print(f"Table       {runs} runs: runs_data {med(ours)*1e3:.0f} ms vs MlflowClient.search_runs {med(peer)*1e3:.0f} ms: "
          f"ratio {med(ours)/med(peer):.2f} (includes the read barrier and the `running_ui` look-up)")
    pts = metric_curves(c, [long])[long]['loss']
    print(f"Curves      a run of {steps:,} steps: {len(pts)} points sent per curve (at most 500), last step {pts[-1][0]:,}: "
          f"{'PASS' if len(pts) <= 500 and pts[-1][0] == steps - 1 else 'FAIL'}")


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--smoke', action='store_true'); ap.add_argument('--cells', type=int, default=200)
    ap.add_argument('--runs', type=int, default=200); ap.add_argument('--steps', type=int, default=100_000)
    ap.add_argument('--repeat', type=int, default=7); ap.add_argument('--pairs', type=int, default=5000)
    a = ap.parse_args()
    if a.smoke: a.cells, a.runs, a.steps, a.repeat, a.pairs = 20, 20, 5000, 2, 500
    bench_cell_hook(a.pairs)
    bench_page(a.cells, a.repeat)
    bench_table(a.runs, a.steps, a.repeat)
