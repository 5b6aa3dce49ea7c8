"""Load models once (a bounded LRU) and predict through pyfunc with signature enforcement.

Model files are materialised in the calling process (which holds the registry credentials);
loading and predicting happen wherever `ModelCache` lives: the prediction worker for pages,
the CLI's own process for the command line.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel

from deploystudio.config import Settings
from deploystudio.errors import InvalidModelError, PredictionError
from deploystudio.model_uri import ModelUriKind, parse_model_uri
from deploystudio.payloads import ModelInput
from deploystudio.registry import Registry

DEFAULT_CACHE_SIZE = 4
_COMPLETE_MARKER = ".deploystudio-complete"


@dataclass(frozen=True)
class Prediction:
    """Predictions as one row per input row, with what it cost to get them."""

    output: pd.DataFrame
    load_seconds: float
    predict_seconds: float
    from_cache: bool
    warnings: list[str] = field(default_factory=list)


class ModelCache:
    """Loaded pyfunc models by local path, least recently used dropped first."""

    def __init__(self, capacity: int = DEFAULT_CACHE_SIZE) -> None:
        self.capacity = capacity
        self._models: OrderedDict[str, PyFuncModel] = OrderedDict()

    def __contains__(self, path: str) -> bool:
        return path in self._models

    def get(self, path: str) -> tuple[PyFuncModel, float, bool]:
        """The model, the seconds spent loading it (0 when cached), whether it was cached."""
        if path in self._models:
            self._models.move_to_end(path)
            return self._models[path], 0.0, True
        started = time.perf_counter()
        try:
            model = mlflow.pyfunc.load_model(path)
        except MlflowException as exc:
            raise InvalidModelError(f"MLflow cannot load the model: {exc.message}") from exc
        except (ImportError, ModuleNotFoundError) as exc:
            raise InvalidModelError(
                f"The model needs a package that is not installed here ({exc}). Install the "
                "model's requirements (Inspect > Environment) to preview it."
            ) from exc
        seconds = time.perf_counter() - started
        self._models[path] = model
        while len(self._models) > self.capacity:
            self._models.popitem(last=False)
        return model, seconds, False


def local_model_path(uri: str, settings: Settings, registry: Registry | None = None) -> Path:
    """A local folder holding the model's files, downloaded once per immutable version."""
    reference = parse_model_uri(uri)
    if reference.kind is ModelUriKind.LOCAL_FOLDER:
        if not (reference.local_path / "MLmodel").is_file():
            raise InvalidModelError(f"'{reference.local_path}' has no MLmodel file.")
        return reference.local_path
    registry = registry or Registry(settings.tracking_uri, settings.registry_uri)
    if reference.kind is ModelUriKind.REGISTERED_ALIAS:
        version = registry.resolve_alias(reference.name, reference.alias)
        reference = parse_model_uri(f"models:/{reference.name}/{version}")
    location = registry.artifact_location(reference)
    target = settings.home / "cache" / "models" / hashlib.sha256(location.encode()).hexdigest()[:24]
    marker = target / _COMPLETE_MARKER
    if marker.is_file():
        return target / marker.read_text().strip()
    # Download next to the target, then rename: a half-downloaded model is never used.
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".download-"))
    try:
        downloaded = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=location, dst_path=str(staging), tracking_uri=settings.tracking_uri
            )
        )
        relative = downloaded.relative_to(staging).as_posix()
        (staging / _COMPLETE_MARKER).write_text(relative)
        if target.exists() and not marker.is_file():
            shutil.rmtree(target)  # left by an interrupted download
        # First complete download wins; a concurrent one finds the target taken and drops its
        # own copy, so a folder in use is never replaced.
        with contextlib.suppress(OSError):
            os.replace(staging, target)
    except (MlflowException, OSError) as exc:
        raise InvalidModelError(f"Could not download {uri}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not marker.is_file():
        raise InvalidModelError(f"Could not store the download of {uri} in {target}.")
    return target / marker.read_text().strip()


def predict_with(model: PyFuncModel, model_input: ModelInput) -> tuple[pd.DataFrame, float]:
    """Predict with MLflow's signature enforcement; the output as a frame, and the seconds."""
    started = time.perf_counter()
    try:
        raw = model.predict(model_input.data, params=model_input.params)
    except MlflowException as exc:
        raise PredictionError(readable_enforcement_error(exc.message)) from exc
    except MemoryError:
        raise  # the worker reports it with its memory limit
    except Exception as exc:  # model code can raise anything; the user needs its message
        raise PredictionError(f"The model raised {type(exc).__name__}: {exc}") from exc
    return predictions_frame(raw), time.perf_counter() - started


def readable_enforcement_error(message: str) -> str:
    """MLflow's schema messages, cut to what a user acts on."""
    text = message.strip()
    for prefix in ("Failed to enforce schema of data ", "Failed to validate serving input: "):
        text = text.replace(prefix, "")
    if "Model is missing inputs" in text:
        return f"The input lacks columns the model requires: {text.split('inputs', 1)[1].strip()}"
    return f"The input does not fit the model's signature: {text}"


def predictions_frame(raw: Any) -> pd.DataFrame:
    """Any pyfunc output as a DataFrame with one row per input row."""
    if isinstance(raw, pd.DataFrame):
        return raw.reset_index(drop=True)
    if isinstance(raw, pd.Series):
        return raw.rename(raw.name or "prediction").reset_index(drop=True).to_frame()
    if isinstance(raw, dict):
        try:
            return pd.DataFrame({k: list(np.asarray(v)) for k, v in raw.items()})
        except ValueError:
            return pd.DataFrame({"prediction": [raw]})
    array = np.asarray(raw)
    if array.ndim == 0:
        return pd.DataFrame({"prediction": [array.item()]})
    if array.ndim == 1:
        return pd.DataFrame({"prediction": array})
    if array.ndim == 2:
        return pd.DataFrame(array, columns=[f"prediction_{i}" for i in range(array.shape[1])])
    return pd.DataFrame({"prediction": list(array)})


def predict_in_process(cache: ModelCache, model_path: Path, model_input: ModelInput) -> Prediction:
    model, load_seconds, from_cache = cache.get(str(model_path))
    output, predict_seconds = predict_with(model, model_input)
    return Prediction(
        output=output,
        load_seconds=load_seconds,
        predict_seconds=predict_seconds,
        from_cache=from_cache,
        warnings=list(model_input.warnings),
    )
