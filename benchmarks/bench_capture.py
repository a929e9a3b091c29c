"""Capture cost: a run's full context vs `pip freeze`, and data fingerprints vs pandas' own hash, measured in one run.

    python benchmarks/bench_capture.py [--repeat 7] [--extra-packages 150] [--gb 1.0] [--fp-repeat 3]
    python benchmarks/bench_capture.py --quick      # 0.1 GB data, 3 repeats
    python benchmarks/bench_capture.py --smoke      # 5 MB data, 1 repeat, 10 fake packages: CI runs this so it cannot rot
    python benchmarks/bench_capture.py --skip-data  # the context capture only

Context    `capture_context(settings, notebook=...)` on a temp git repository (a commit, 2 modified tracked files,
           4 untracked files, a notebook, one imported local module), with `--extra-packages` fake `*.dist-info`
           folders added to the venv's packages (the issue's environment has ~300):
             cold  the call alone, first in a new Python process (the import of mlops_nb.capture shown apart);
             warm  the call repeated in one process.                   Target: <= 200 ms.
           Peers in the same run: `python -m pip freeze` (a subprocess, its wall time), and importlib.metadata reading
           every distribution's name and version. The time of each part (git, local modules, packages, environment)
           is shown too. The package count must match importlib.metadata's, names and versions alike.
Data       `fingerprint(df)` of a ~`--gb` GB numeric frame (8 float64 columns) and of a mixed one (int, two str
           columns, one with 1% missing, float, datetime, bool), vs `pd.util.hash_pandas_object(df, index=True).sum()`
           on the same frame; `fingerprint(path)` of a `--gb` GB file (in the page cache: just written) vs
           `hashlib.file_digest` and the `sha256sum` command. Target: a 1 GB frame in seconds, not minutes.
           Stable across processes: the frames are rebuilt from the same seed in a new process (another
           PYTHONHASHSEED) and must fingerprint the same.
Figures are medians (the machines here are noisy); building the repository, the packages and the data is not timed.
"""
import argparse, gc, hashlib, importlib.metadata, json, os, re, resource, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

CITIES = ['Paris', 'Lyon', 'Marseille', 'Toulouse', 'Nice', 'Nantes', 'Strasbourg', 'Bordeaux', 'Lille', 'Rennes']
MIXED_ROW_BYTES = 60  # id 8 + user ~21 + city ~15 + amount 8 + ts 8 + flag 1 (checked: the real size is printed)


def note(msg): print(f"  .. {msg}", file=sys.stderr, flush=True)
def median(xs): return statistics.median(xs)
def peak_rss_gb(who=resource.RUSAGE_SELF): return resource.getrusage(who).ru_maxrss / 2**20


def canonical(name): return re.sub(r'[-_.]+', '-', name).lower()


# -- the project and its environment --------------------------------------------------------------------------------
NOTEBOOK = {"cells": [{"cell_type": "code", "execution_count": i, "id": f"c{i}", "metadata": {}, "outputs": [],
                       "source": [f"# step {i}\n", "import pandas as pd, numpy as np\n", "from churn_features import add_features\n",
                                  f"df_{i} = add_features(pd.read_csv('data/sample.csv'))\n", "np.random.seed(42)\n"]}
                      for i in range(40)],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def make_repo(root):
    "A realistic project: one commit, then 2 tracked files modified and 4 small untracked files."
    r = Path(root)/'churn'
    files = {'pyproject.toml': '[project]\nname = "churn"\nversion = "0.1.0"\n',
             'README.md': '# Churn\n\nPredict churn.\n' + 'Some words about the project.\n' * 50,
             '.gitignore': '.mlops/\n__pycache__/\n.ipynb_checkpoints/\n',
             'src/churn_features.py': ''.join(f"def feature_{i}(df):\n    return df.iloc[:, 0] * {i}\n\n" for i in range(200))
                                      + "def add_features(df):\n    return df\n",
             'src/train.py': "import churn_features\n\n" + "# training code\n" * 300,
             'data/README.md': 'The data comes from the warehouse.\n',
             'analysis.ipynb': json.dumps(NOTEBOOK, indent=1)}
    for rel, text in files.items(): (r/rel).parent.mkdir(parents=True, exist_ok=True); (r/rel).write_text(text)
    git = lambda *a: subprocess.run(['git', '-C', str(r), '-c', 'user.name=bench', '-c', 'user.email=bench@example.com',
                                     '-c', 'init.defaultBranch=main', *a], check=True, capture_output=True)
    git('init', '-q'); git('add', '-A'); git('commit', '-q', '-m', 'first')
    git('remote', 'add', 'origin', 'https://bench:not-a-secret@example.com/team/churn.git')
    with open(r/'src/churn_features.py', 'a') as f: f.write("\ndef feature_new(df):\n    return df.iloc[:, 1] ** 2\n")
    with open(r/'README.md', 'a') as f: f.write("\nNew section.\n")
    untracked = {'notes.txt': 'try lr=0.05\n' * 20, 'scratch.py': 'print("hi")\n' * 50,
                 'config/local.yaml': 'lr: 0.05\nepochs: 10\n', 'data/sample.csv': 'a,b,c\n' + '1,2,3\n' * 3000}
    for rel, text in untracked.items(): (r/rel).parent.mkdir(parents=True, exist_ok=True); (r/rel).write_text(text)
    return r


def make_fake_packages(root, n):
    "n fake installed distributions: `fakepkgNNN-1.0.N.dist-info/METADATA`, in a folder of their own."
    d = Path(root)/'fake-site'; d.mkdir()
    for i in range(n):
        di = d/f'fakepkg{i:03d}-1.0.{i}.dist-info'; di.mkdir()
        (di/'METADATA').write_text(f"Metadata-Version: 2.1\nName: fakepkg{i:03d}\nVersion: 1.0.{i}\n")
    return d


def metadata_names():
    return [(d.metadata['Name'], d.version) for d in importlib.metadata.distributions()]


# -- context capture ------------------------------------------------------------------------------------------------
COLD_CALL = """
import json, sys, time
t0 = time.perf_counter()
import mlops_nb.tracking.capture as C
t1 = time.perf_counter()
from mlops_nb.core.config import resolve_settings
s = resolve_settings(project_dir={repo!r}, env={{}})
sys.path.insert(0, {src!r}); import churn_features
t2 = time.perf_counter()
ctx, files = C.capture_context(s, notebook={nb!r}, user_ns=None)
t3 = time.perf_counter()
import importlib.metadata
t4 = time.perf_counter()
meta = [(d.metadata['Name'], d.version) for d in importlib.metadata.distributions()]
t5 = time.perf_counter()
g = ctx['code']['git']
print(json.dumps(dict(import_s=t1 - t0, call_s=t3 - t2, metadata_s=t5 - t4, packages=len(ctx['environment']['packages']),
                      modules=len(ctx['code']['modules']), changed=len(g['changed']), untracked=len(files), diff=len(g['diff']))))
"""

COLD_PARTS = """
import json, os, sys, time
import mlops_nb.tracking.capture as C
from mlops_nb.core.config import resolve_settings
s = resolve_settings(project_dir={repo!r}, env={{}})
sys.path.insert(0, {src!r}); import churn_features
out, pc = {{}}, time.perf_counter
t = pc(); C.capture_git({repo!r}); out['capture_git'] = pc() - t
t = pc(); C.local_modules({repo!r}); out['local_modules'] = pc() - t
t = pc(); C.installed_packages(); out['installed_packages'] = pc() - t
t = pc(); C.capture_environment(s.env_allowlist, dict(os.environ), s.redact_secrets); out['capture_environment'] = pc() - t
print(json.dumps(out))
"""


def parts_once(C, s, repo):
    pc, out = time.perf_counter, {}
    t = pc(); C.capture_git(repo); out['capture_git'] = pc() - t
    t = pc(); C.local_modules(repo); out['local_modules'] = pc() - t
    t = pc(); C.installed_packages(); out['installed_packages'] = pc() - t
    t = pc(); C.capture_environment(s.env_allowlist, dict(os.environ), s.redact_secrets); out['capture_environment'] = pc() - t
    return out


def bench_context(root, repeat, extra):
    repo = make_repo(root); nb = repo/'analysis.ipynb'; src = repo/'src'
    fake = make_fake_packages(root, extra) if extra else None
    env = dict(os.environ)
    if fake: env['PYTHONPATH'] = os.pathsep.join([str(fake)] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    run = lambda args, **kw: subprocess.run(args, check=True, capture_output=True, text=True, cwd=repo, **kw)
    res = dict(repo=repo, extra=extra)

    # what each side sees: the venv's packages alone (for the count check), then with the fake ones
    from mlops_nb.tracking.capture import installed_packages
    venv_pkgs = len(installed_packages())
    freeze_lines = lambda out: [l for l in out.splitlines() if l.strip() and not l.startswith('#')]
    res['freeze_base'] = len(freeze_lines(run([sys.executable, '-m', 'pip', 'freeze']).stdout))
    if fake: sys.path.insert(0, str(fake))
    sys.path.insert(0, str(src)); import churn_features  # noqa: F401  a local module, as a project's notebook imports one
    import mlops_nb.tracking.capture as C
    from mlops_nb.core.config import resolve_settings
    s = resolve_settings(project_dir=repo, env={})
    ours = C.installed_packages()
    meta = metadata_names()
    theirs = {}
    for n, v in meta: theirs.setdefault(canonical(n), v)
    res.update(venv_pkgs=venv_pkgs, ours=len(ours), meta_dists=len(meta), meta_names=len(theirs),
               differ=sorted(set(ours.items()) ^ set(theirs.items()))[:6])

    note(f"context capture: {repeat} cold processes, {repeat} warm calls, {repeat} pip freeze")
    cold, parts_cold, freeze, proc = [], [], [], []
    for _ in range(repeat):
        t = time.perf_counter()
        out = run([sys.executable, '-c', COLD_CALL.format(repo=str(repo), src=str(src), nb=str(nb))], env=env).stdout
        proc.append(time.perf_counter() - t); cold.append(json.loads(out))
        parts_cold.append(json.loads(run([sys.executable, '-c', COLD_PARTS.format(repo=str(repo), src=str(src))], env=env).stdout))
        t = time.perf_counter(); out = run([sys.executable, '-m', 'pip', 'freeze'], env=env).stdout
        freeze.append(time.perf_counter() - t)
    res['freeze_count'] = len(freeze_lines(out))
    ctx, files = C.capture_context(s, notebook=nb, user_ns=None)  # the first in-process call is left out
    warm, ctx_s, warm_parts, meta_warm = [], [], [], []
    for _ in range(repeat):
        t = time.perf_counter(); ctx, files = C.capture_context(s, notebook=nb, user_ns=None); warm.append(time.perf_counter() - t)
        ctx_s.append(ctx['capture_seconds'])
        warm_parts.append(parts_once(C, s, str(repo)))
        t = time.perf_counter(); metadata_names(); meta_warm.append(time.perf_counter() - t)
    g = ctx['code']['git']
    res.update(cold=median([c['call_s'] for c in cold]), import_s=median([c['import_s'] for c in cold]),
               meta_cold=median([c['metadata_s'] for c in cold]), proc=median(proc), freeze=median(freeze),
               warm=median(warm), ctx_s=median(ctx_s), meta_warm=median(meta_warm),
               cold_packages={c['packages'] for c in cold}, warm_packages=len(ctx['environment']['packages']),
               parts_cold={k: median([p[k] for p in parts_cold]) for k in parts_cold[0]},
               parts_warm={k: median([p[k] for p in warm_parts]) for k in warm_parts[0]},
               shape=dict(changed=len(g['changed']), untracked=len(files), diff=len(g['diff']),
                          modules=len(ctx['code']['modules']), commit=bool(g['commit']), remote=g['remote']))
    if fake: sys.path.remove(str(fake))
    return res


def report_context(r, repeat):
    ms = lambda x: f"{x*1000:8.1f} ms"
    sh = r['shape']
    total = r['ours']
    print(f"context capture  (target: <= 200 ms with ~300 packages)")
    print(f"project: a git repository with {'a commit' if sh['commit'] else 'no commit'}, {sh['changed']} modified tracked files "
          f"(diff {sh['diff']:,} chars), {sh['untracked']} untracked files kept, a notebook, {sh['modules']} local module; "
          f"remote {sh['remote']}")
    print(f"packages: {total} found by installed_packages() ({r['venv_pkgs']} without the {r['extra']} fake dist-info folders: "
          f"{total - r['venv_pkgs']:+d}) "
          f"(cold processes saw {', '.join(map(str, sorted(r['cold_packages'])))}; warm {r['warm_packages']})")
    same = not r['differ'] and r['ours'] == r['meta_names']
    print(f"  importlib.metadata: {r['meta_names']} distinct names ({r['meta_dists']} distributions): "
          + ("same names and versions" if same else f"DIFFERENT, e.g. {r['differ']}"))
    print(f"  pip freeze lists {r['freeze_count']} requirements ({r['freeze_base']} without the fake folders: "
          f"{r['freeze_count'] - r['freeze_base']:+d}; it leaves out pip, setuptools, wheel)")
    W = 54
    print(f"\n{'':<{W}}{'median':>11}{'pip freeze/this':>17}{'importlib.metadata/this':>25}")
    rows = [("capture_context, first call in a new process", r['cold'], r['meta_cold']),
            ("capture_context, warm (repeated in one process)", r['warm'], r['meta_warm']),
            ("new process: start, import, capture (wall)", r['proc'], None)]
    for name, x, m in rows:
        print(f"{name:<{W}}{ms(x):>11}{r['freeze']/x:>16.1f}x" + (f"{m/x:>24.1f}x" if m else f"{'-':>25}"))
    print(f"{'  of which import mlops_nb.tracking.capture':<{W}}{ms(r['import_s']):>11}")
    print(f"{'capture_seconds the context records (warm)':<{W}}{ms(r['ctx_s']):>11}")
    print(f"{'pip freeze (subprocess wall)':<{W}}{ms(r['freeze']):>11}")
    print(f"{'importlib.metadata name+version, first in a process':<{W}}{ms(r['meta_cold']):>11}")
    print(f"{'importlib.metadata name+version, warm':<{W}}{ms(r['meta_warm']):>11}")
    print(f"\n{'where the time goes: each part timed alone':<{W}}{'cold':>11}{'warm':>11}")
    pc, pw = r['parts_cold'], r['parts_warm']
    for k in pw:
        label = k + (' (with installed_packages)' if k == 'capture_environment' else '')
        print(f"  {label:<{W-2}}{ms(pc[k]):>11}{ms(pw[k]):>11}")
    rest = lambda p, call: call - p['capture_git'] - p['local_modules'] - p['capture_environment']
    print(f"  {'rest: redaction, notebook hash, argv (difference)':<{W-2}}{ms(rest(pc, r['cold'])):>11}"
          f"{ms(rest(pw, r['warm'])):>11}")
    print(f"medians of {repeat}; cold = the first call of each, in this order, in a new process; ratio = peer / mlops_nb; "
          f"importlib.metadata's first call is timed in the cold process, after the capture")


# -- data fingerprints ----------------------------------------------------------------------------------------------
def numeric_frame(gb, seed):
    import numpy as np, pandas as pd
    rng, rows = np.random.default_rng(seed), int(gb * 2**30 / 64)
    return pd.DataFrame({f'x{i}': rng.standard_normal(rows) for i in range(8)})


def mixed_frame(gb, seed):
    import numpy as np, pandas as pd, pyarrow as pa, pyarrow.compute as pc
    rng, rows = np.random.default_rng(seed), int(gb * 2**30 / MIXED_ROW_BYTES)
    ids = np.arange(rows, dtype='int64')
    user = pc.binary_join_element_wise('user_', pa.array(ids).cast(pa.string()), '')
    city = pa.array(CITIES).take(pa.array(rng.integers(0, len(CITIES), rows)))
    city = pc.if_else(pa.array(rng.random(rows) < 0.01), pa.scalar(None, pa.string()), city)
    return pd.DataFrame({'id': ids, 'user': pd.array(user, dtype='str'), 'city': pd.array(city, dtype='str'),
                         'amount': rng.standard_normal(rows) * 100,
                         'ts': pd.to_datetime(rng.integers(1_600_000_000, 1_800_000_000, rows), unit='s'),
                         'flag': rng.random(rows) < 0.5})


def bench_frame(df, repeat):
    from mlops_nb.tracking.capture import fingerprint
    import pandas as pd
    ours, theirs, fp = [], [], None
    for _ in range(repeat):
        t = time.perf_counter(); fp = fingerprint(df); ours.append(time.perf_counter() - t)
        gc.collect()
        t = time.perf_counter(); pd.util.hash_pandas_object(df, index=True).sum(); theirs.append(time.perf_counter() - t)
        gc.collect()
    return dict(ours=median(ours), theirs=median(theirs), fp=fp['fingerprint'], rows=len(df),
                gb=df.memory_usage(deep=True).sum() / 2**30, dtypes=', '.join(f"{c} {t}" for c, t in df.dtypes.items()))


def bench_file(root, gb, repeat, seed):
    import numpy as np
    from mlops_nb.tracking.capture import fingerprint
    p, rng, left = Path(root)/'data.bin', np.random.default_rng(seed), int(gb * 2**30)
    with open(p, 'wb') as f:
        while left > 0: n = min(left, 64 * 2**20); f.write(rng.bytes(n)); left -= n
    sha = shutil.which('sha256sum')
    ours, fd, tool, digests = [], [], [], set()
    for _ in range(repeat):
        t = time.perf_counter(); digests.add(fingerprint(p)['fingerprint']); ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        with open(p, 'rb') as f: digests.add(hashlib.file_digest(f, 'sha256').hexdigest())
        fd.append(time.perf_counter() - t)
        if sha:
            t = time.perf_counter(); out = subprocess.run([sha, str(p)], check=True, capture_output=True, text=True).stdout
            tool.append(time.perf_counter() - t); digests.add(out.split()[0])
    size = p.stat().st_size / 2**30; p.unlink()
    return dict(ours=median(ours), file_digest=median(fd), sha256sum=median(tool) if tool else None, gb=size,
                agree=len(digests) == 1)


def stability_child(gb, seed):
    "In a new process: rebuild the frames from the seed and print their fingerprints (the parent compares)."
    from mlops_nb.tracking.capture import fingerprint
    out = {}
    for name, build in (('numeric', numeric_frame), ('mixed', mixed_frame)):
        df = build(gb, seed); out[name] = fingerprint(df)['fingerprint']; del df; gc.collect()
    out['peak_rss_gb'] = peak_rss_gb()
    print(json.dumps(out))


def bench_data(root, gb, repeat, seed):
    res = {}
    for name, build in (('numeric', numeric_frame), ('mixed', mixed_frame)):
        note(f"building the {name} frame (~{gb:g} GB, not timed)")
        t = time.perf_counter(); df = build(gb, seed); res[f'{name}_build_s'] = time.perf_counter() - t
        note(f"fingerprint vs hash_pandas_object, {name} frame, {repeat} times each")
        res[name] = bench_frame(df, repeat)
        del df; gc.collect()
    note(f"file fingerprint ({gb:g} GB), {repeat} times each")
    res['file'] = bench_file(root, gb, repeat, seed)
    note("stability: the same frames rebuilt in a new process")
    env = dict(os.environ, PYTHONHASHSEED='12345')
    out = subprocess.run([sys.executable, __file__, '--stability-child', '--gb', str(gb), '--seed', str(seed)],
                         check=True, capture_output=True, text=True, env=env).stdout
    res['child'] = json.loads(out.strip().splitlines()[-1])
    res['peak_rss_gb'] = peak_rss_gb()
    return res


def report_data(r, gb, repeat):
    print(f"\ndata fingerprints  (target: a 1 GB frame in seconds, not minutes; stable across processes)")
    print(f"{'':<10}{'rows':>12}{'size':>9}{'fingerprint':>14}{'':>11}{'hash_pandas_object':>20}{'':>11}{'ratio':>7}")
    for name in ('numeric', 'mixed'):
        f = r[name]
        print(f"{name:<10}{f['rows']:>12,}{f['gb']:>7.2f}GB{f['ours']:>12.2f} s{f['gb']/f['ours']:>6.2f} GB/s"
              f"{f['theirs']:>18.2f} s{f['gb']/f['theirs']:>6.2f} GB/s{f['theirs']/f['ours']:>6.1f}x")
    print(f"  numeric: {r['numeric']['dtypes']}")
    print(f"  mixed:   {r['mixed']['dtypes']}  (city 1% missing)")
    f = r['file']
    line = (f"file      {f['gb']:>20.2f}GB{f['ours']:>12.2f} s{f['gb']/f['ours']:>6.2f} GB/s   "
            f"hashlib.file_digest {f['file_digest']:.2f} s ({f['file_digest']/f['ours']:.2f}x)")
    if f['sha256sum'] is not None: line += f", sha256sum {f['sha256sum']:.2f} s ({f['sha256sum']/f['ours']:.2f}x)"
    print(line + f"; same digest: {'yes' if f['agree'] else 'NO'}")
    c = r['child']
    same = {n: c[n] == r[n]['fp'] for n in ('numeric', 'mixed')}
    print(f"stable across processes (rebuilt from the seed in a new process, PYTHONHASHSEED=12345): "
          + ', '.join(f"{n} {'yes' if ok else 'NO'}" for n, ok in same.items()) + f"  ({r['numeric']['fp'][:16]}..., {r['mixed']['fp'][:16]}...)")
    print(f"medians of {repeat}; the file is in the page cache (just written); ratio = hash_pandas_object (or peer) / fingerprint; "
          f"building took {r['numeric_build_s']:.1f} s and {r['mixed_build_s']:.1f} s (not timed); "
          f"peak memory {r['peak_rss_gb']:.1f} GB here, {c['peak_rss_gb']:.1f} GB in the new process")
    return all(same.values()) and f['agree']


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeat', type=int, default=7, help="cold processes, warm calls and pip freeze runs (medians)")
    ap.add_argument('--extra-packages', type=int, default=150, help="fake dist-info folders added to the venv's packages")
    ap.add_argument('--gb', type=float, default=1.0, help="size of each frame and of the file")
    ap.add_argument('--fp-repeat', type=int, default=3, help="timings of each fingerprint and its peers (medians)")
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--quick', action='store_true', help="0.1 GB and 3 repeats")
    ap.add_argument('--skip-data', action='store_true', help="only the context capture")
    ap.add_argument('--smoke', action='store_true', help="the smallest run that takes every path once (seconds, not minutes); CI runs it so the script cannot rot")
    ap.add_argument('--stability-child', action='store_true', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.stability_child: return stability_child(a.gb, a.seed)
    if a.quick: a.gb, a.repeat, a.fp_repeat = 0.1, 3, 3
    if a.smoke: a.gb, a.repeat, a.fp_repeat, a.extra_packages = 0.005, 1, 1, 10
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix='bench-capture-') as root:
        note("building the repository and the fake packages (not timed)")
        ctx = bench_context(root, a.repeat, a.extra_packages)
        data = None if a.skip_data else bench_data(root, a.gb, a.fp_repeat, a.seed)
    report_context(ctx, a.repeat)
    ok = not ctx['differ'] and ctx['ours'] == ctx['meta_names']
    if data: ok = report_data(data, a.gb, a.fp_repeat) and ok
    print(f"\nwhole run {time.perf_counter() - t0:.0f} s")
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
