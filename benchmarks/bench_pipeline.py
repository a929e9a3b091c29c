"""Pipeline runs: `mlops-nb run` vs plain `papermill` (wall and CPU of every process each starts), and `mlops-nb sweep
--workers 2` vs one at a time, in one run.

    python benchmarks/bench_pipeline.py [--repeat 7] [--sweep-repeat 3] [--phases-repeat 3] [--sleep 1.0]   # ~10 minutes
    python benchmarks/bench_pipeline.py --skip-sweep   # the run comparison only (~5 minutes); --skip-run: the sweep only
    python benchmarks/bench_pipeline.py --quick        # repeat 3 for run, 1 for the sweep and the phases: ~4 minutes
    python benchmarks/bench_pipeline.py --smoke        # one round of the run comparison, verified; no phases, no sweep: ~30 s

Every command is the venv's console script, started as a subprocess from a temp project folder (a `pyproject.toml`
with `[project] name = "bench"`), so the wall times include interpreter start, imports, the kernel and the store.
CPU is user+sys of every process the command starts, however it starts them: this script makes itself a child
subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`), so a process that outlives the command (a detached sync process, say) is
reparented to it, waited for and counted in `RUSAGE_CHILDREN` too; the script says how many there were. Compiled
bytecode is cached in a temp folder (`PYTHONPYCACHEPREFIX`; the checkout's PYTHONDONTWRITEBYTECODE is lifted for the
commands), as an installed package has its `.pyc` files.

Run    A trivial notebook (a parameters cell `x = 1`, then `y = x + 1`), `--repeat` rounds, the order rotating each
       round: `mlops-nb run nb.ipynb --no-html`, `papermill nb.ipynb out.ipynb`, `mlops-nb run nb.ipynb` (HTML on, the
       default), and, as a diagnostic peer, papermill's CLI with jsonschema's optional IRI checker blocked as
       `mlops-nb`'s `main` blocks it. One untimed warm-up of each first (store creation, OS caches).
                               Target: `mlops-nb run` <= 1.1x papermill, in wall time and in CPU, HTML on and off.
       Ratios are taken round by round (the commands of a round run back to back) and their median reported beside
       the ratio of the medians. Each mlops-nb run must exit 0 with a FINISHED run in the store (the HTML artifact only
       when asked for), and print no sign of MLflow having been imported.
       Where the time goes (`--phases-repeat` times each): imports alone in new processes (with and without the
       `rfc3987_syntax` block), and both commands run in a new process with their phases timed (the library's
       functions wrapped in timers, nothing else changed).
Sweep  8 small notebooks (parameter `i = 0`; one cell sleeps `--sleep` s, imports mlops_nb and logs metric `m` = i
       when a run is active), `--sweep-repeat` rounds: `mlops-nb sweep nb.ipynb -p i 0,...,7 --workers 2`, the same
       with `--workers 1`, 8 sequential `mlops-nb run nb.ipynb -p i K` (a user's loop), 8 sequential `papermill`.
       Each command with its defaults: the sweeps render no HTML, the loop's `mlops-nb run` does.
                                                   Target: `--workers 2` >= 1.6x faster than `--workers 1` (2 cores).
       Each sweep must print "8 runs, 0 failed" and its 8 child runs be FINISHED in the store with m = 0..7.
Figures are medians (the machines here are noisy). The store template is built once up front into a temp cache
(MLOPS_NB_CACHE_DIR) and not timed.
"""
import argparse, json, os, re, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
MLOPS_NB, PAPERMILL = str(VENV_BIN/'mlops-nb'), str(VENV_BIN/'papermill')
KERNELSPEC = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
              "language_info": {"name": "python"}}
BLOCK_IRI = "import sys; sys.modules['rfc3987_syntax'] = None; "
PAPERMILL_NO_IRI = [sys.executable, '-c', BLOCK_IRI + "from papermill.__main__ import papermill; papermill()"]
RUN_LINE = re.compile(r'^(FINISHED|FAILED|KILLED)\s.*\brun ([0-9a-f]{32})\b', re.M)
SWEEP_LINE = re.compile(r'(\d+) runs, (\d+) failed, ([\d.]+) s; parent run ([0-9a-f]{32})')


def note(msg): print(f"  .. {msg}", file=sys.stderr, flush=True)
def median(xs): return statistics.median(xs)
def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN); return r.ru_utime + r.ru_stime


def notebook(path, params_src, body_src):
    cell = lambda i, src, tags: {"cell_type": "code", "execution_count": None, "id": f"cell{i}",
                                 "metadata": {"tags": tags} if tags else {}, "outputs": [], "source": src}
    nb = {"cells": [cell(0, params_src, ['parameters']), cell(1, body_src, None)], "metadata": KERNELSPEC,
          "nbformat": 4, "nbformat_minor": 5}
    Path(path).write_text(json.dumps(nb, indent=1))


def project(root, name):
    d = Path(root)/name; d.mkdir()
    (d/'pyproject.toml').write_text('[project]\nname = "bench"\n')
    return d


def _subreaper():
    "Make this process the reaper of its orphaned descendants (Linux), so their CPU time reaches RUSAGE_CHILDREN."
    import ctypes
    try: return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError): return False


def _reap_orphans(timeout=120):
    "Wait for every descendant left behind by the last command (reparented here); how many there were."
    n, deadline = 0, time.monotonic() + timeout
    while True:
        try: pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError: return n  # none left
        if pid: n += 1; continue
        if time.monotonic() > deadline: raise SystemExit(f"FAILED: a process the command started still runs {timeout} s after it exited")
        time.sleep(0.05)


class Runner:
    "Runs the console scripts in a project with the temp cache; times each call (wall until it exits; CPU of every process it started)."
    def __init__(self, cache, pycache):
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(('MLOPS_NB_', 'MLFLOW_')) and k != 'PYTHONDONTWRITEBYTECODE'}
        self.env['MLOPS_NB_CACHE_DIR'] = str(cache)
        self.env['PYTHONUNBUFFERED'] = '1'
        if pycache: self.env['PYTHONPYCACHEPREFIX'] = str(pycache)  # None (--smoke): the bytecode pip installed
        self.reaper, self.orphans = _subreaper(), 0

    def __call__(self, args, cwd, check=True):
        c0, t0 = cpu_children(), time.perf_counter()
        p = subprocess.run(args, cwd=cwd, env=self.env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        self.orphans += _reap_orphans()
        cpu = cpu_children() - c0
        if check and p.returncode != 0:
            raise SystemExit(f"FAILED: {' '.join(map(str, args))} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        return p, wall, cpu


def client_for(proj, cache):
    from mlops_nb.core.config import resolve_settings
    from mlops_nb.store.client import open_client
    return open_client(resolve_settings(project_dir=proj, env={}, cache_dir=str(cache)))


def papermill_meta(path):
    "(notebook duration, [cell durations], all completed) from the papermill metadata of an executed notebook."
    nb = json.loads(Path(path).read_text())
    cells = [c['metadata'].get('papermill') or {} for c in nb['cells']]
    ok = nb['metadata']['papermill'].get('exception') is None and all(c.get('status') == 'completed' for c in cells)
    return nb['metadata']['papermill']['duration'], [c.get('duration') for c in cells], ok


# -- 1. mlops-nb run vs papermill on a trivial notebook ----------------------------------------------------------------
OURS, OURS_HTML, PM, PM_NO_IRI = 'mlops-nb run --no-html', 'mlops-nb run (HTML)', 'papermill', 'papermill, IRI checker blocked'


def bench_run(root, cache, run, repeat):
    proj = project(root, 'run'); notebook(proj/'nb.ipynb', 'x = 1', 'y = x + 1')
    modes = {OURS: [MLOPS_NB, 'run', 'nb.ipynb', '--no-html'], PM: [PAPERMILL, 'nb.ipynb', 'out.ipynb'],
             OURS_HTML: [MLOPS_NB, 'run', 'nb.ipynb'], PM_NO_IRI: [*PAPERMILL_NO_IRI, 'nb.ipynb', 'out.ipynb']}
    note("trivial notebook: one untimed warm-up of each (the store is created here)")
    for args in modes.values(): run(args, proj)
    wall, cpu = {m: [] for m in modes}, {m: [] for m in modes}
    runs, pm_meta = [], []
    names = list(modes)
    note(f"trivial notebook: {repeat} rounds of {', '.join(names)}")
    for k in range(repeat):
        for m in names[k % len(names):] + names[:k % len(names)]:
            p, w, c = run(modes[m], proj)
            wall[m].append(w); cpu[m].append(c)
            if m.startswith('papermill'): pm_meta.append(papermill_meta(proj/'out.ipynb'))
            else:
                got = RUN_LINE.search(p.stdout)
                if not got or got.group(1) != 'FINISHED': raise SystemExit(f"FAILED: {m} printed no FINISHED run:\n{p.stdout}\n{p.stderr[-2000:]}")
                if 'mlflow' in p.stderr.lower(): raise SystemExit(f"FAILED: {m} said something about MLflow:\n{p.stderr[-2000:]}")
                out = re.search(r'executed notebook: (\S+)', p.stdout)
                runs.append((m, got.group(2), papermill_meta(out.group(1)) if out else None))
    # every run in the store, finished, with the HTML only when asked for
    c = client_for(proj, cache)
    checked, execute = 0, {m: [] for m in (OURS, OURS_HTML)}
    for m, rid, meta in runs:
        r = c.get_run(rid)
        arts = {Path(a.path).suffix for a in c.list_artifacts(rid, 'pipeline')}
        want_html = m == OURS_HTML
        if r.info.status != 'FINISHED' or r.data.tags.get('mlops_nb.pipeline_run') != 'true' or ('.html' in arts) != want_html \
           or '.ipynb' not in arts or meta is None or not meta[2] or r.data.tags.get('mlops_nb.pipeline.status') != 'FINISHED':
            raise SystemExit(f"FAILED: run {rid} ({m}): status {r.info.status}, artifacts {sorted(arts)}, notebook ok {meta and meta[2]}")
        execute[m].append(r.data.metrics['pipeline/wall_seconds']); checked += 1
    if not all(mm[2] for mm in pm_meta): raise SystemExit("FAILED: a papermill run did not complete every cell")
    tracking_cell = [meta[1][1] for m, _, meta in runs]  # the cell `mlops-nb run` adds after the parameters
    return dict(proj=proj, wall=wall, cpu=cpu, checked=checked, execute=execute, tracking_cell=tracking_cell,
                pm_nb=[mm[0] for mm in pm_meta], ours_nb=[meta[0] for _, _, meta in runs], orphans=run.orphans, reaper=run.reaper)


IMPORTS = ['pass', 'import mlops_nb.cli', 'import mlops_nb.pipelines.run, mlops_nb.pipelines.outcome, mlops_nb.store.backends, mlops_nb.tracking.sync', 'import papermill',
           'import nbconvert', 'import papermill, nbconvert', 'import mlflow']


def bench_imports(run, cwd, repeat):
    "Wall time of `python -c CODE` in new processes, with and without the rfc3987_syntax block."
    note(f"imports: {len(IMPORTS)} x 2 variants, {repeat} processes each")
    out = {}
    for _ in range(repeat):
        for code in IMPORTS:
            for pre in ('', BLOCK_IRI):
                _, w, _ = run([sys.executable, '-c', pre + code], cwd)
                out.setdefault((code, bool(pre)), []).append(w)
    return {k: median(v) for k, v in out.items()}


# Runs `mlops-nb run` in a new process as its console script does (`main()` reading sys.argv), with timers around the
# library's own functions. `--no-freeze` calls `main(args)` instead, which leaves out the console script's gc.freeze().
OURS_PHASES = r"""
import json, sys, time
T = {'t0': time.monotonic()}
def mark(k): T.setdefault(k, time.monotonic())
from mlops_nb.cli import main
mark('cli_imported')
import mlops_nb.pipelines.run as P, mlops_nb.pipelines.outcome as O, mlops_nb.tracking.sync as TR
def around(obj, name, before, after=None):
    f = getattr(obj, name)
    def w(*a, **kw):
        mark(before)
        try: return f(*a, **kw)
        finally:
            if after: mark(after)
    setattr(obj, name, w)
around(O.Finisher, '_warm', 'warm_start', 'warm_end')
around(O.Finisher, 'finish', 'finish_start')
around(O, '_finish_run', 'record_start', 'record_end')
around(P, '_shutdown_kernel', 'shutdown_start', 'shutdown_end')
around(P, '_render_html', 'html_start', 'html_end')
around(TR, 'replay_journals', 'replay_start', 'replay_end')
around(P, 'run_notebook', 'run_notebook')
_init = O.Finisher.__init__
def init(self, *a, **kw): mark('papermill_imported'); _init(self, *a, **kw)
O.Finisher.__init__ = init
_km = P._kernel_manager
def km(*a, **kw):
    import papermill
    around(papermill, 'execute_notebook', 'execute_start', 'execute_end')
    return _km(*a, **kw)
P._kernel_manager = km
out, args = sys.argv[1], sys.argv[2:]
try:
    if args[:1] == ['--no-freeze']: main(args[1:])
    else: sys.argv = ['mlops-nb', *args]; main()
except SystemExit as e: T['rc'] = e.code
mark('end')
import gc
T['modules'], T['objects'] = len(sys.modules), len(gc.get_objects())  # objects: 0 once frozen
open(out, 'w').write(json.dumps(T))
"""

PAPERMILL_PHASES = r"""
import json, sys, time
T = {'t0': time.monotonic()}
def mark(k): T.setdefault(k, time.monotonic())
from papermill.__main__ import papermill as cmd
import papermill.cli as C
mark('imported')
_ex = C.execute_notebook
def ex(*a, **kw):
    mark('execute_start')
    try: return _ex(*a, **kw)
    finally: mark('execute_end')
C.execute_notebook = ex
try: cmd.main(sys.argv[2:], standalone_mode=False); T['rc'] = 0
except SystemExit as e: T['rc'] = e.code
mark('end')
import gc
T['modules'], T['objects'] = len(sys.modules), len(gc.get_objects())
open(sys.argv[1], 'w').write(json.dumps(T))
"""


def bench_phases(run, proj, root, repeat):
    "Phases of one `mlops-nb run` (with and without HTML) and one `papermill`, each in a new process, medians."
    note(f"where the time goes: {repeat} instrumented runs of each")
    out = {'--no-html': [], 'html': [], 'papermill': [], 'no-freeze': []}
    tf = Path(root)/'phases.json'
    for _ in range(repeat):
        for key, code, args in (('--no-html', OURS_PHASES, ['run', 'nb.ipynb', '--no-html']), ('html', OURS_PHASES, ['run', 'nb.ipynb']),
                                ('papermill', PAPERMILL_PHASES, ['nb.ipynb', 'out.ipynb']),
                                ('no-freeze', OURS_PHASES, ['--no-freeze', 'run', 'nb.ipynb', '--no-html'])):
            launch = time.monotonic()
            p, w, _ = run([sys.executable, '-c', code, str(tf), *args], proj)
            done = time.monotonic()
            T = json.loads(tf.read_text()); tf.unlink()
            if T.get('rc') not in (0, None): raise SystemExit(f"FAILED: instrumented {key} exited {T['rc']}:\n{p.stdout}\n{p.stderr[-2000:]}")
            T['launch'], T['done'] = launch, done
            out[key].append(T)
    return out


def ours_phases(Ts):
    "[(label, median seconds)] of instrumented mlops-nb runs; consecutive marks, so they add up to the wall time."
    d = lambda T, a, b: (T[b] - T[a]) if a in T and b in T else 0.0
    rows = [("interpreter start, site (until the script's first line)", lambda T: d(T, 'launch', 't0')),
            ("import mlops_nb.cli (click, config)", lambda T: d(T, 't0', 'cli_imported')),
            ("CLI, settings", lambda T: d(T, 'cli_imported', 'run_notebook')),
            ("read + check the notebook, import papermill and nbformat, check the store", lambda T: d(T, 'run_notebook', 'papermill_imported')),
            ("kernel manager, output notebook prepared", lambda T: d(T, 'papermill_imported', 'execute_start')),
            ("papermill.execute_notebook: kernel start + 3 cells", lambda T: d(T, 'execute_start', 'execute_end')),
            ("kernel shutdown (it ends its run, closes its journal)", lambda T: d(T, 'execute_end', 'shutdown_end')),
            ("wait for the finisher thread and the HTML page, if any (the embedded store loads nothing)", lambda T: d(T, 'shutdown_end', 'record_start')),
            ("record the outcome: replay the kernel's journal", lambda T: d(T, 'replay_start', 'replay_end')),
            ("record the outcome: the rest (find the run, journal the outcome and apply it)",
             lambda T: d(T, 'record_start', 'record_end') - d(T, 'replay_start', 'replay_end')),
            ("return, print the result", lambda T: d(T, 'record_end', 'end')),
            ("interpreter exit (finalization)", lambda T: d(T, 'end', 'done'))]
    res = [(label, median([f(T) for T in Ts])) for label, f in rows]
    res.append(("total (wall)", median([T['done'] - T['launch'] for T in Ts])))
    if any('warm_start' in T for T in Ts):
        res.append(("  in the background: finisher thread (nbconvert's import; MLflow's only for a server), from its start",
                    median([d(T, 'warm_start', 'warm_end') for T in Ts])))
        res.append(("  ...ended this long after the kernel shut down (<= 0: ready before)",
                    median([d(T, 'shutdown_end', 'warm_end') for T in Ts])))
    if any('html_start' in T for T in Ts):
        res.append(("  in the background: render the HTML (nbconvert, a thread started as the execution ends)",
                    median([d(T, 'html_start', 'html_end') for T in Ts])))
        res.append(("  ...ended this long after the kernel shut down (<= 0: ready before)",
                    median([d(T, 'shutdown_end', 'html_end') for T in Ts])))
    return res


def papermill_phases(Ts):
    d = lambda T, a, b: T[b] - T[a]
    rows = [("interpreter start, site", lambda T: d(T, 'launch', 't0')),
            ("import papermill.cli (jsonschema's IRI checker included)", lambda T: d(T, 't0', 'imported')),
            ("CLI parsing", lambda T: d(T, 'imported', 'execute_start')),
            ("execute_notebook: kernel start + 2 cells + kernel shutdown", lambda T: d(T, 'execute_start', 'execute_end')),
            ("return", lambda T: d(T, 'execute_end', 'end')),
            ("interpreter exit (finalization)", lambda T: d(T, 'end', 'done'))]
    res = [(label, median([f(T) for T in Ts])) for label, f in rows]
    res.append(("total (wall)", median([T['done'] - T['launch'] for T in Ts])))
    return res


def report_run(r, imports, phases, repeat):
    w = {m: median(x) for m, x in r['wall'].items()}
    c = {m: median(x) for m, x in r['cpu'].items()}
    print("mlops-nb run vs papermill, trivial notebook (x = 1; y = x + 1)  (target: mlops-nb run <= 1.1x papermill, wall and CPU)")
    print(f"{'':<34}{'wall':>8}{'min':>8}{'max':>8}{'CPU':>8}   {'/ papermill: wall, CPU (median of rounds; of medians)':<40}")
    ratios = {}
    for m in r['wall']:
        xs = r['wall'][m]
        rw = [a / b for a, b in zip(xs, r['wall'][PM])]; rc = [a / b for a, b in zip(r['cpu'][m], r['cpu'][PM])]
        ratios[m] = (median(rw), median(rc))
        print(f"{m:<34}{w[m]:>7.2f}s{min(xs):>7.2f}s{max(xs):>7.2f}s{c[m]:>7.2f}s   "
              f"{median(rw):.2f}x, {median(rc):.2f}x  ({w[m]/w[PM]:.2f}x, {c[m]/c[PM]:.2f}x; rounds {min(rw):.2f}-{max(rw):.2f}x wall)")
    for m in (OURS, OURS_HTML):
        rw, rc = ratios[m]
        print(f"-> {m} / papermill: {rw:.2f}x wall, {rc:.2f}x CPU: target {'met' if rw <= 1.1 and rc <= 1.1 else 'MISSED'} "
              f"({w[m] - w[PM]:+.2f} s wall, {c[m] - c[PM]:+.2f} s CPU a run); vs papermill with the IRI checker blocked: "
              f"{median([a / b for a, b in zip(r['wall'][m], r['wall'][PM_NO_IRI])]):.2f}x wall, "
              f"{median([a / b for a, b in zip(r['cpu'][m], r['cpu'][PM_NO_IRI])]):.2f}x CPU")
    print(f"verified: {r['checked']} mlops-nb runs exited 0, FINISHED in the store (HTML artifact only on the HTML runs); "
          f"{len(r['pm_nb'])} papermill runs completed every cell; processes left running after a command exited: {r['orphans']} "
          f"({'counted' if r['reaper'] else 'NOT counted: no subreaper on this OS'})")
    ex = median(r['execute'][OURS])
    print(f"papermill's own execution, recorded in the executed notebook (kernel start + cells): papermill {median(r['pm_nb']):.2f} s, "
          f"mlops-nb {median(r['ours_nb']):.2f} s, of which mlops-nb's tracking cell {median(r['tracking_cell'])*1000:.0f} ms; "
          f"pipeline/wall_seconds (execute + kernel shutdown) {ex:.2f} s")
    print(f"medians of {repeat} rounds (order rotating); CPU = user+sys of the command's process and every process it started")
    if imports is None: return ratios

    print(f"\nimports alone, `python -c CODE` in a new process (wall, median)")
    print(f"{'':<64}{'as is':>9}{'rfc3987_syntax blocked':>24}")
    for code in IMPORTS:
        a, b = imports[(code, False)], imports[(code, True)]
        print(f"{code:<64}{a:>8.2f}s{b:>23.2f}s")
    print("`mlops-nb`'s `main` blocks rfc3987_syntax (jsonschema's optional IRI checker) before its imports; the `papermill` "
          "command does not")

    print(f"\nwhere the time goes: each command in a new process with its phases timed, medians of {len(phases['papermill'])}")
    for key, title in (('--no-html', OURS), ('html', OURS_HTML)):
        print(f"{title}")
        for label, s in ours_phases(phases[key]):
            print(f"  {label:<100}{s:>7.2f}s")
    print("papermill")
    for label, s in papermill_phases(phases['papermill']): print(f"  {label:<100}{s:>7.2f}s")
    size = lambda key: f"{median([T['modules'] for T in phases[key]]):,.0f} modules, {median([T['objects'] for T in phases[key]]):,.0f} objects"
    ex = lambda key: median([T['done'] - T['end'] for T in phases[key]])
    print(f"at exit: mlops-nb run holds {size('no-freeze')}, papermill {size('papermill')}; diagnostic: mlops-nb run --no-html "
          f"through main(args), which leaves out the console script's gc.freeze(): the exit takes {ex('no-freeze'):.2f} s "
          f"instead of {ex('--no-html'):.2f} s (total {median([T['done'] - T['launch'] for T in phases['no-freeze']]):.2f} s)")
    return ratios


# -- 2. sweep -----------------------------------------------------------------------------------------------------------
def bench_sweep(root, cache, run, repeat, sleep, n=8):
    proj = project(root, 'sweep')
    body = (f"import time; time.sleep({sleep!r})\nimport mlops_nb as mn\n"
            "if mn.active_run(): mn.log_metric('m', i)  # plain papermill: no active run, nothing logged")
    notebook(proj/'nb.ipynb', 'i = 0', body)
    values = ','.join(map(str, range(n)))
    modes = {'sweep --workers 2': 'w2', 'sweep --workers 1': 'w1', f'{n} x mlops-nb run': 'loop', f'{n} x papermill': 'pm'}
    note("small notebooks: an untimed warm-up of mlops-nb run and papermill")
    run([MLOPS_NB, 'run', 'nb.ipynb', '-p', 'i', '0'], proj); run([PAPERMILL, 'nb.ipynb', 'out.ipynb', '-p', 'i', '0'], proj)
    wall, cpu, inner, per_run = ({m: [] for m in modes} for _ in range(4))
    c = client_for(proj, cache)
    names = list(modes)

    def children(pid):
        rs = c.search_runs([e.experiment_id for e in c.search_experiments()], filter_string=f"tags.`mlops_nb.sweep` = '{pid}'")
        return [r for r in rs if r.data.tags.get('mlflow.parentRunId') == pid]

    def check(rs, what):
        ms = sorted(r.data.metrics.get('m', -1) for r in rs)
        if len(rs) != n or any(r.info.status != 'FINISHED' for r in rs) or ms != list(range(n)):
            raise SystemExit(f"FAILED: {what}: {len(rs)} runs, statuses {sorted(r.info.status for r in rs)}, m = {ms}")
        return [r.data.metrics['pipeline/wall_seconds'] for r in rs]

    note(f"small notebooks: {repeat} rounds of {', '.join(names)}")
    for k in range(repeat):
        for m in names[k % 4:] + names[:k % 4]:
            note(m)
            if m.startswith('sweep'):
                p, w, cp = run([MLOPS_NB, 'sweep', 'nb.ipynb', '-p', 'i', values, '--workers', m[-1]], proj)
                got = SWEEP_LINE.search(p.stdout)
                if not got or (int(got.group(1)), int(got.group(2))) != (n, 0):
                    raise SystemExit(f"FAILED: {m} did not print '{n} runs, 0 failed':\n{p.stdout}\n{p.stderr[-2000:]}")
                inner[m].append(float(got.group(3)))
                per_run[m] += check(children(got.group(4)), m)
            elif m.endswith('mlops-nb run'):
                w = cp = 0.0; ids = []
                for i in range(n):
                    p, wi, ci = run([MLOPS_NB, 'run', 'nb.ipynb', '-p', 'i', str(i)], proj); w += wi; cp += ci
                    got = RUN_LINE.search(p.stdout)
                    if not got or got.group(1) != 'FINISHED': raise SystemExit(f"FAILED: mlops-nb run -p i {i}:\n{p.stdout}")
                    ids.append(got.group(2))
                per_run[m] += check([c.get_run(x) for x in ids], m)
            else:
                w = cp = 0.0
                for i in range(n):
                    p, wi, ci = run([PAPERMILL, 'nb.ipynb', f'out{i}.ipynb', '-p', 'i', str(i)], proj); w += wi; cp += ci
                    if not papermill_meta(proj/f'out{i}.ipynb')[2]: raise SystemExit(f"FAILED: papermill -p i {i} did not complete")
            wall[m].append(w); cpu[m].append(cp)
    return dict(wall=wall, cpu=cpu, inner=inner, per_run=per_run, body=body, n=n)


def report_sweep(r, repeat, sleep):
    n = r['n']
    w = {m: median(x) for m, x in r['wall'].items()}
    w2, w1, loop, pm = (w[m] for m in r['wall'])
    print(f"\nsweep of {n} small notebooks on {os.cpu_count()} cores  (target: --workers 2 >= 1.6x faster than --workers 1)")
    print("the notebook: parameters `i = 0`; then `" + r['body'].replace('\n', '; ') + "`")
    print(f"{'':<24}{'wall':>9}{'min':>9}{'max':>9}{'CPU':>9}{'CPU/wall':>10}{'this/workers 2':>16}   inside")
    for m, xs in r['wall'].items():
        extra = ''
        if r['inner'][m]:
            extra = (f"the sweep reports {median(r['inner'][m]):.1f} s (so {w[m] - median(r['inner'][m]):.1f} s before/after it); "
                     f"a run {median(r['per_run'][m]):.2f} s")
        elif r['per_run'][m]: extra = f"a run's execute {median(r['per_run'][m]):.2f} s of {w[m]/n:.2f} s wall"
        else: extra = f"{w[m]/n:.2f} s a notebook"
        print(f"{m:<24}{w[m]:>8.1f}s{min(xs):>8.1f}s{max(xs):>8.1f}s{median(r['cpu'][m]):>8.1f}s{median(r['cpu'][m])/w[m]:>10.2f}"
              f"{w[m]/w2:>15.2f}x   {extra}")
    s1 = w1 / w2
    rounds = [b / a for a, b in zip(r['wall']['sweep --workers 2'], r['wall']['sweep --workers 1'])]
    print(f"-> --workers 2 vs --workers 1: {s1:.2f}x faster: target {'met' if s1 >= 1.6 else 'MISSED'} (round by round: "
          f"{', '.join(f'{x:.2f}x' for x in rounds)}); vs the loop of mlops-nb run: {loop/w2:.2f}x; "
          f"vs the loop of plain papermill: {pm/w2:.2f}x")
    fixed1, inner1 = w1 - median(r['inner']['sweep --workers 1']), median(r['inner']['sweep --workers 1'])
    print(f"   bound: the {fixed1:.1f} s a sweep process spends outside its runs (start, imports, store, parent run, exit) do not "
          f"shrink with workers; if the runs part ({inner1:.1f} s with --workers 1) took exactly half with 2 workers, "
          f"--workers 2 would take {fixed1 + inner1/2:.1f} s: {w1/(fixed1 + inner1/2):.2f}x")
    print(f"verified: every sweep printed '{n} runs, 0 failed' and its {n} child runs are FINISHED with m = 0..{n-1}; "
          f"every mlops-nb run of the loop FINISHED with its m; every papermill run completed")
    print("each command with its defaults: the sweeps store no HTML rendering, the loop's mlops-nb run does")
    print(f"medians of {repeat} rounds (order rotating); 'a run' = median pipeline/wall_seconds of the runs (execute + kernel "
          f"shutdown); each notebook sleeps {sleep:g} s")
    return s1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeat', type=int, default=7, help="rounds of the trivial-notebook runs (medians)")
    ap.add_argument('--sweep-repeat', type=int, default=3, help="rounds of the sweep comparison (medians)")
    ap.add_argument('--phases-repeat', type=int, default=3, help="instrumented runs and import timings (medians)")
    ap.add_argument('--sleep', type=float, default=1.0, help="seconds each small notebook sleeps")
    ap.add_argument('--quick', action='store_true', help="repeat 3 for run, 1 for the sweep and the phases")
    ap.add_argument('--skip-run', action='store_true', help="only the sweep")
    ap.add_argument('--skip-sweep', action='store_true', help="only the run comparison")
    ap.add_argument('--skip-phases', action='store_true', help="no import timings, no instrumented runs")
    ap.add_argument('--smoke', action='store_true', help="one round of the run comparison, verified; no phases, no sweep")
    a = ap.parse_args()
    if a.quick: a.repeat, a.sweep_repeat, a.phases_repeat = 3, 1, 1
    if a.smoke: a.repeat, a.skip_sweep, a.skip_phases = 1, True, True
    t0, load0 = time.perf_counter(), os.getloadavg()
    import platform, importlib.metadata as md
    versions = ', '.join(f"{p} {md.version(p)}" for p in ('mlflow', 'papermill', 'nbclient', 'ipykernel', 'nbconvert', 'jsonschema'))
    with tempfile.TemporaryDirectory(prefix='bench-pipeline-') as root:
        cache = Path(root)/'cache'
        note("building the store template (not timed)")
        from mlops_nb.store.client import build_template, template_path
        t = time.perf_counter(); build_template(template_path(cache)); tmpl = time.perf_counter() - t
        run = Runner(cache, None if a.smoke else Path(root)/'pycache')
        r = sw = imports = phases = None
        if not a.skip_run:
            r = bench_run(root, cache, run, a.repeat)
            if not a.skip_phases:
                imports = bench_imports(run, r['proj'], a.phases_repeat)
                phases = bench_phases(run, r['proj'], root, a.phases_repeat)
        if not a.skip_sweep: sw = bench_sweep(root, cache, run, a.sweep_repeat, a.sleep)
    print(f"Python {platform.python_version()}, {versions}; {os.cpu_count()} cores; "
          f"store template build {tmpl:.1f} s (not timed)\n")
    if r: report_run(r, imports, phases, a.repeat)
    if sw: report_sweep(sw, a.sweep_repeat, a.sleep)
    load1 = os.getloadavg()
    print(f"\nload average at start {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f}, at the end {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f} "
          f"(1 / 5 / 15 min); whole run {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == '__main__':
    sys.exit(main())
