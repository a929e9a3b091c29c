"""Every benchmark in benchmarks/ runs in its `--smoke` mode (every path once, small), so none can rot unseen.

The figures themselves are measured by running the scripts without `--smoke` (benchmarks/README.md); here only
their correctness checks count: each script exits non-zero when a result is wrong (a metric missing from the store,
a drift not found, a run not FINISHED), and must print its figures."""
import os, subprocess, sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.integration]
BENCHMARKS = sorted(p.name for p in (REPO/'benchmarks').glob('bench_*.py'))
# A line each smoke run must print: the script reached its report, not just its start.
PRINTS = {'bench_capture.py': 'whole run', 'bench_drift.py': 'whole run', 'bench_drift_calibration.py': 'whole run',
          'bench_load_ext.py': '%load_ext mlops_nb', 'bench_pipeline.py': 'whole run', 'bench_quota.py': 'summary:',
          'bench_scale.py': 'Profile of a Parquet folder', 'bench_serving.py': 'whole run', 'bench_store_create.py': 'ratio = MLflow / mlops_nb',
          'bench_tracking.py': 'first track() with a quota', 'bench_drift_performance.py': 'whole run',
          'bench_live.py': 'the browser got', 'bench_runs_view.py': 'Curves      a run of'}


def test_every_benchmark_has_a_smoke_mode_and_a_line_to_print():
    for b in BENCHMARKS:
        assert "'--smoke'" in (REPO/'benchmarks'/b).read_text(), f"benchmarks/{b} has no --smoke mode: add one (CI runs it)"
    assert set(PRINTS) == set(BENCHMARKS), "a benchmark was added or removed: say in PRINTS what its smoke run prints"


@pytest.mark.parametrize('bench', BENCHMARKS)
def test_benchmark_smoke_run(bench, env):
    # TMPDIR stays the system's: the scripts clean their own temp folders, and kernels' and servers' AF_UNIX socket
    # paths under pytest's deep tmp_path exceed the 107-byte limit ("File name too long").
    env = {**env, 'PATH': f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run([sys.executable, str(REPO/'benchmarks'/bench), '--smoke'], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=540)
    assert r.returncode == 0, f"benchmarks/{bench} --smoke exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert PRINTS[bench] in r.stdout, f"benchmarks/{bench} --smoke did not print {PRINTS[bench]!r}:\n{r.stdout[-3000:]}"
