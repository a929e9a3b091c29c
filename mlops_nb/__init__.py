"""Jupyter-first MLOps on MLflow: `%load_ext mlops_nb`, then `%mlops track`; or `import mlops_nb as mn; mn.track()`."""
__version__ = "0.1.0"

from .errors import MlopsNbError
from .tracking import (track, stop, active_run, log_metric, log_metrics, log_param, log_params, set_tag,
                       log_artifact, log_dataset, status, sync)

__all__ = ['track', 'stop', 'active_run', 'log_metric', 'log_metrics', 'log_param', 'log_params', 'set_tag',
           'log_artifact', 'log_dataset', 'status', 'sync', 'seed', 'track_data', 'fingerprint', 'diff_runs', 'reproduce',
           'run_notebook', 'load_run', 'log_model', 'register_candidate', 'load_model', 'champion_metrics', 'check_gates',
           'validate_schema', 'profile', 'merge_profiles', 'load_profile', 'drift', 'estimate_performance', 'DriftWidget', 'QuotaWidget', 'live', 'promote', 'approve', 'rollback', 'MlopsNbError',
           'load_ipython_extension']

_LAZY = {'seed': 'capture', 'track_data': 'capture', 'fingerprint': 'capture',
         'diff_runs': 'reproduce', 'reproduce': 'reproduce', 'run_notebook': 'pipeline', 'load_run': 'pipeline',
         **{k: 'registry' for k in ('log_model', 'register_candidate', 'load_model', 'champion_metrics', 'check_gates',
                                    'validate_schema')},
         'profile': 'profiles', 'merge_profiles': 'profiles', 'load_profile': 'profiles', 'drift': 'drift',
         'estimate_performance': 'performance',
         'DriftWidget': 'drift_widget', 'QuotaWidget': 'quota_widget',
         'live': 'live',
         'promote': 'promotion', 'approve': 'promotion', 'rollback': 'promotion'}


class _CallableModule(type(__import__('sys'))):
    "A module that is also its namesake function: once `mlops_nb.drift` is imported, `mn.drift` is that module, and `mn.drift(...)` still calls `mlops_nb.drift.drift`."
    def __call__(self, *args, **kwargs): return getattr(self, self.__name__.rsplit('.', 1)[1])(*args, **kwargs)


def _callable_module(name):
    "Make module `name` (e.g. `mlops_nb.drift`) callable as its namesake function."
    import sys
    sys.modules[name].__class__ = _CallableModule


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
