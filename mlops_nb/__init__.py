"""Jupyter-first MLOps on MLflow: `%load_ext mlops_nb`, then `%mlops track`; or `import mlops_nb as mn; mn.track()`."""
__version__ = "0.1.0"

from .errors import MlopsNbError
from .tracking import (track, stop, active_run, log_metric, log_metrics, log_param, log_params, set_tag,
                       log_artifact, status, sync)

__all__ = ['track', 'stop', 'active_run', 'log_metric', 'log_metrics', 'log_param', 'log_params', 'set_tag',
           'log_artifact', 'status', 'sync', 'MlopsNbError', 'load_ipython_extension']


def load_ipython_extension(ip):
    "`%load_ext mlops_nb`: register the `%mlops` magics."
    from .magics import load_ipython_extension as load
    load(ip)


def unload_ipython_extension(ip):
    from .magics import unload_ipython_extension as unload
    unload(ip)
