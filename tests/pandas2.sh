#!/bin/sh
# The drift and profile tests on pandas 2 (text as `object` columns), in a venv of their own beside the project's.
#   sh tests/pandas2.sh [VENV]          # default VENV: .venv-pd2 (gitignored? add it, or pass a path outside the checkout)
# Builds the venv once: pandas<3 and the drift engine's own dependencies only, and the package without its
# dependencies (for the `mlops-nb` console script the CLI tests call); the code under test is the checkout's
# (PYTHONPATH). Tests that need MLflow, IPython, whylogs or a browser are left out (or skip): they test tracking, not pandas.
set -e
HERE=$(cd "$(dirname "$0")/.." && pwd)
VENV=${1:-$HERE/.venv-pd2}
if [ ! -x "$VENV/bin/mlops-nb" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'pandas<3' numpy scipy datasketches pyarrow psutil pyyaml click pytest fastcore scikit-learn plotly
  "$VENV/bin/pip" install -q --no-deps "$HERE"
fi
"$VENV/bin/python" -c "import pandas; assert pandas.__version__ < '3', pandas.__version__; print('pandas', pandas.__version__)"
cd "$HERE"
PYTHONPATH="$HERE" PATH="$VENV/bin:$PATH" "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_drift.py tests/test_performance.py \
  -k "not track_data and not logged_to_the_active_run and not magic and not whylogs and not logged_as_metrics and not monitored_runs"
