"""Jupyter-first MLOps on MLflow: `%load_ext mlops_nb`, then `%mlops track`; or `import mlops_nb as mn; mn.track()`."""
__version__ = "0.1.0"

from .core.errors import MlopsNbError
from .tracking.runs import (track, stop, active_run, log_metric, log_metrics, log_param, log_params, set_tag,
                       log_artifact, log_dataset, status, sync)

__all__ = ['track', 'stop', 'active_run', 'log_metric', 'log_metrics', 'log_param', 'log_params', 'set_tag',
           'log_artifact', 'log_dataset', 'status', 'sync', 'seed', 'track_data', 'fingerprint', 'diff_runs', 'reproduce',
           'run_notebook', 'load_run', 'log_model', 'register_candidate', 'load_model', 'champion_metrics', 'check_gates',
           'validate_schema', 'profile', 'merge_profiles', 'load_profile', 'drift', 'estimate_performance', 'DriftWidget', 'QuotaWidget', 'live', 'promote', 'approve', 'rollback', 'MlopsNbError',
           'load_ipython_extension']

_LAZY = {'seed': 'tracking.seeds', 'track_data': 'monitoring.datasets', 'fingerprint': 'tracking.capture',
         'diff_runs': 'tracking.reproduce', 'reproduce': 'tracking.reproduce', 'run_notebook': 'pipelines.run', 'load_run': 'pipelines.outcome',
         **{k: 'models.registry' for k in ('log_model', 'register_candidate', 'load_model', 'champion_metrics')},
         **{k: 'models.quality' for k in ('check_gates',
                                    'validate_schema')},
         'profile': 'monitoring.profiles', 'merge_profiles': 'monitoring.profiles', 'load_profile': 'monitoring.profiles', 'drift': 'monitoring.drift',
         'estimate_performance': 'monitoring.performance',
         'DriftWidget': 'monitoring.drift_widget', 'QuotaWidget': 'resources.quota_widget',
         'live': 'tracking.live',
         'promote': 'models.promotion', 'approve': 'models.promotion', 'rollback': 'models.promotion'}


def __getattr__(name):
    "`mn.seed`, `mn.track_data`, `mn.reproduce`, ...: imported on first use, to keep `import mlops_nb` cheap."
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mlops_nb' has no attribute {name!r}")


def load_ipython_extension(ip):
    "`%load_ext mlops_nb`: register the `%mlops` magics."
    from .magics import load_ipython_extension as load
    load(ip)


def unload_ipython_extension(ip):
    from .magics import unload_ipython_extension as unload
    unload(ip)
