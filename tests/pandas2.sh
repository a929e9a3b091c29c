#!/bin/sh
# The drift and profile tests on pandas 2 (text as `object` columns), in a venv of their own beside the project's.
#   sh tests/pandas2.sh [VENV]          # default VENV: .venv-pd2 (gitignored? add it, or pass a path outside the checkout)
# Builds the venv once: pandas<3 and the drift engine's own dependencies only, and an `mlops-nb` launcher; the code
# under test is the checkout's (PYTHONPATH). Tests that need MLflow, IPython, whylogs or a browser are left out (or
# skip): they test tracking, not pandas. The suite runs this script as tests/test_pandas2.py.
#
# When the project's venv exists (BASE_VENV, default: the checkout's .venv, as the README's commands make it), the
# new venv sees its packages through a .pth file, after its own: only pandas 2 (and what the base lacks, e.g. pytest
# before the dev extra is installed) is downloaded and installed, in seconds instead of a minute. pip never touches
# the base: a package there that does not fit is shadowed by one installed here ("Not uninstalling ... outside
# environment"). Without a base venv, everything is installed here.
set -e
HERE=$(cd "$(dirname "$0")/.." && pwd)
VENV=${1:-$HERE/.venv-pd2}
BASE_VENV=${BASE_VENV:-$HERE/.venv}
if [ ! -x "$VENV/bin/mlops-nb" ]; then
  python3 -m venv "$VENV"
  if [ -x "$BASE_VENV/bin/python" ] && [ "$(cd "$BASE_VENV" && pwd -P)" != "$(cd "$VENV" && pwd -P)" ]; then
    site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    "$BASE_VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > "$site/_mlops_nb_base_venv.pth"
    echo "pandas2: reusing the packages of $BASE_VENV (after this venv's own)"
  fi
  "$VENV/bin/pip" install -q 'pandas<3' numpy scipy datasketches pyarrow psutil pyyaml click pytest fastcore scikit-learn plotly
  # The `mlops-nb` console script the CLI tests call, for the checkout's code (PYTHONPATH below); not `pip install
  # "$HERE"`, which would build in the checkout (build/, *.egg-info).
  printf '#!%s\nimport sys\nfrom mlops_nb.cli import main\nsys.exit(main())\n' "$VENV/bin/python" > "$VENV/bin/mlops-nb"
  chmod +x "$VENV/bin/mlops-nb"
fi
"$VENV/bin/python" -c "import pandas; assert pandas.__version__ < '3', pandas.__version__; print('pandas', pandas.__version__)"
cd "$HERE"
PYTHONPATH="$HERE" PATH="$VENV/bin:$PATH" "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_drift.py tests/test_performance.py \
  -k "not track_data and not logged_to_the_active_run and not magic and not whylogs and not logged_as_metrics and not monitored_runs"
