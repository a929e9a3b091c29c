"""mlops_nb alone on bench_drift's 1M x 25 frames: `drift()` called N times in one process, wall, CPU and memory above the frames.

    python benchmarks/drift_timing.py 5          # on pandas 3; on pandas 2: sh tests/pandas2.sh DIR, then DIR/bin/python ...

The first call warms imports and is left out of the medians. bench_drift.py has the peers (scipy, whylogs) and new
processes per repeat; this one answers "how long does one drift take on this pandas" in a minute."""
import os, sys, time, statistics, json
sys.path.insert(0, 'benchmarks')
import bench_drift as B
from mlops_nb.monitoring.drift import drift, DriftConfig
import pandas as pd
ref, cur = B.frames(1_000_000, 0); cfg = DriftConfig()
print('pandas', pd.__version__, 'dtype of text', ref[B.CATEGORICAL[0]].dtype, 'frames RSS MB', B._status('VmRSS'), flush=True)
rows = []
for i in range(int(sys.argv[1]) if len(sys.argv) > 1 else 5):
    la = os.getloadavg()[0]
    with B.Peak() as m:
        t = time.perf_counter(); c = time.process_time(); rep = drift(ref, cur, config=cfg, log=False)
        w = time.perf_counter() - t; cpu = time.process_time() - c
    rows.append((w, cpu, m.mb)); print(f"call {i}: wall {w:.2f} s, CPU {cpu:.2f} s, +{m.mb:.0f} MB ({m.how}), load {la:.1f}, drifted {sorted(rep.drifted)}", flush=True)
    del rep
w, c, mb = zip(*rows[1:])  # the first call warms imports
print(f"median of calls 2-{len(rows)}: wall {statistics.median(w):.2f} s (min {min(w):.2f}), CPU {statistics.median(c):.2f} s, +{statistics.median(mb):.0f} MB; load {os.getloadavg()}")
