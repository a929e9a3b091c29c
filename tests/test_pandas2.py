"""The drift and profile tests again on pandas 2, where text columns are `object` (most users' pandas today).

tests/pandas2.sh builds a venv with pandas<3 beside the one running this suite (it sees that venv's packages after its
own, so only pandas 2 is installed) and runs tests/test_drift.py and tests/test_performance.py there. Run here, in the
suite, it overlaps with the other tests instead of costing CI a step of its own."""
import re, subprocess, sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_the_drift_tests_pass_on_pandas_2(tmp_path_factory, env):
    import pandas
    if pandas.__version__ < '3': pytest.skip(f"this suite already runs on pandas {pandas.__version__}")
    venv = tmp_path_factory.mktemp('pandas2')/'venv'  # outside the checkout
    base = Path(sys.executable).parent.parent  # the venv running this suite
    r = subprocess.run(['sh', str(REPO/'tests'/'pandas2.sh'), str(venv)], cwd=REPO, capture_output=True, text=True, timeout=900,
                       env={**env, 'BASE_VENV': str(base)})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert re.search(r'^pandas 2\.', r.stdout, re.M), out[-3000:]  # the venv really has pandas 2
    summary = r.stdout.strip().splitlines()[-1]  # pytest's summary (pip's warnings go to stderr)
    assert re.search(r'\b([1-9]\d*) passed', summary) and 'failed' not in summary and 'error' not in summary, out[-6000:]
