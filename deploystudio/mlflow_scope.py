"""Run MLflow's fluent API (start_run, log_model, register_model) against one registry,
leaving the process as it was.

`mlflow.set_tracking_uri` and `set_registry_uri` change module state and also write
MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI into os.environ, so a one-off seed or re-log would
silently redirect every later client in the process (a Streamlit server, a test session).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
from mlflow.tracking import _model_registry, _tracking_service

_ENV_NAMES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@contextmanager
def using_registry(tracking_uri: str, registry_uri: str) -> Iterator[None]:
    saved_env = {name: os.environ.get(name) for name in _ENV_NAMES}
    saved_tracking = _tracking_service.utils._tracking_uri
    saved_registry = _model_registry.utils._registry_uri
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_tracking)
        mlflow.set_registry_uri(saved_registry)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
