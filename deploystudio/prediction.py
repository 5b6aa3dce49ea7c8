"""Load models once (a bounded LRU) and predict through pyfunc with signature enforcement.

Model files are materialised in the calling process (which holds the registry credentials);
loading and predicting happen wherever `ModelCache` lives: the prediction worker for pages,
the CLI's own process for the command line.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel
from mlflow.types import Schema
from mlflow.types.schema import DataType

from deploystudio.config import Settings
from deploystudio.errors import InvalidModelError, PayloadError, PredictionError, UnsafePathError
from deploystudio.model_files import links_leaving, local_artifact_folder
from deploystudio.model_location import contained_folder
from deploystudio.model_uri import ModelUriKind, parse_model_uri
from deploystudio.payloads import (
    ROWS_COUNTED,
    ModelInput,
    bad_value_message,
    check_params,
    first_failed_cast,
)
from deploystudio.registry import Registry
from deploystudio.worker.model_errors import external_cause

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
        # MLflow keeps the model a models-from-code file set last in a module global and never
        # clears it: a code file that forgets set_model() would load the previous model.
        mlflow.models.model.__mlflow_model__ = None
        try:
            model = mlflow.pyfunc.load_model(path)
        except MlflowException as exc:
            raise InvalidModelError(f"MLflow cannot load the model: {exc.message}") from exc
        except (ImportError, ModuleNotFoundError) as exc:
            raise InvalidModelError(
                f"The model needs a package that is not installed here ({exc}). Install the "
                "model's requirements (Inspect > Environment) to preview it."
            ) from exc
        except MemoryError:
            raise  # the worker reports it with its memory limit
        except Exception as exc:  # the model's own code (load_context, a pickled object) raised
            raise InvalidModelError(
                f"The model's code raised {type(exc).__name__} while loading: {exc}. Fix its "
                "load_context() (or what it unpickles) and log the model again."
            ) from exc
        seconds = time.perf_counter() - started
        self._models[path] = model
        while len(self._models) > self.capacity:
            self._models.popitem(last=False)
        return model, seconds, False


def local_model_path(
    uri: str,
    settings: Settings,
    registry: Registry | None = None,
    allowed_local_roots: tuple[Path, ...] | None = None,
) -> Path:
    """A local folder holding the model's files, downloaded once per immutable version.
    With `allowed_local_roots`, a local folder must lie inside one of them (pages pass the
    configured roots; the CLI passes None, its user may open any folder)."""
    reference = parse_model_uri(uri)
    if reference.kind is ModelUriKind.LOCAL_FOLDER:
        folder = contained_folder(reference.local_path, allowed_local_roots)
        if not (folder / "MLmodel").is_file():
            raise InvalidModelError(f"'{reference.local_path}' has no MLmodel file.")
        return folder
    registry = registry or Registry(settings.tracking_uri, settings.registry_uri)
    if reference.kind is ModelUriKind.REGISTERED_ALIAS:
        version = registry.resolve_alias(reference.name, reference.alias)
        reference = parse_model_uri(f"models:/{reference.name}/{version}")
    # artifact_location checks the location with model_location.contained_location.
    location = registry.artifact_location(reference)
    if not (model_cache_folder(location, settings) / _COMPLETE_MARKER).is_file():
        _refuse_links_leaving(location, uri)

    def download(staging: Path) -> Path:
        try:
            return Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=location, dst_path=str(staging), tracking_uri=settings.tracking_uri
                )
            )
        except MlflowException as exc:
            raise InvalidModelError(f"Could not download {uri}: {exc}") from exc

    return cached_download(location, uri, settings, download)


def model_cache_folder(key: str, settings: Settings) -> Path:
    """Where the download of a model stored at `key` (a location or a registry's own name for
    the version) is kept: one folder per key under the data folder's cache."""
    return settings.home / "cache" / "models" / hashlib.sha256(key.encode()).hexdigest()[:24]


def cached_download(
    key: str, uri: str, settings: Settings, download: Callable[[Path], Path]
) -> Path:
    """The model folder of `uri`, downloaded once into `model_cache_folder(key)`: `download`
    gets an empty staging folder and returns the model folder it filled (inside it). Every
    registry's download goes through here, so the cache's rules are the same for all: the
    folder is complete before it is used, it stays inside the cache, it has an MLmodel file."""
    target = model_cache_folder(key, settings)
    marker = target / _COMPLETE_MARKER
    if marker.is_file():
        return _downloaded_model(target, marker, uri)
    # Download next to the target, then rename: a half-downloaded model is never used.
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".download-"))
    try:
        downloaded = download(staging).resolve()
        if not downloaded.is_relative_to(staging.resolve()):
            raise UnsafePathError(f"The download of {uri} left its staging folder: {downloaded}")
        relative = downloaded.relative_to(staging.resolve()).as_posix()
        (staging / _COMPLETE_MARKER).write_text(relative)
        if target.exists() and not marker.is_file():
            shutil.rmtree(target)  # left by an interrupted download
        # First complete download wins; a concurrent one finds the target taken and drops its
        # own copy, so a folder in use is never replaced.
        with contextlib.suppress(OSError):
            os.replace(staging, target)
    except OSError as exc:
        raise InvalidModelError(f"Could not download {uri}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not marker.is_file():
        raise InvalidModelError(f"Could not store the download of {uri} in {target}.")
    return _downloaded_model(target, marker, uri)


def _downloaded_model(target: Path, marker: Path, uri: str) -> Path:
    """The model folder a finished download left in `target`: inside it, with an MLmodel."""
    folder = (target / marker.read_text().strip()).resolve()
    if not folder.is_relative_to(target.resolve()):
        raise UnsafePathError(f"The cached download of {uri} points outside its folder {target}.")
    if not (folder / "MLmodel").is_file():
        raise InvalidModelError(
            f"{uri} has no MLmodel file, so it is not an MLflow model: point at the folder the "
            "model was logged to (often a subfolder named 'model')."
        )
    return folder


def _refuse_links_leaving(location: str, uri: str) -> None:
    folder = local_artifact_folder(location)
    try:
        if folder is None or not folder.is_dir():
            return
    except OSError as exc:  # a name the OS cannot take (too long): no such model here
        raise InvalidModelError(f"{uri} is stored at a path that cannot be opened: {exc}") from exc
    leaving = links_leaving(folder)
    if leaving:
        shown = ", ".join(f"'{p}'" for p in leaving[:3]) + (" ..." if len(leaving) > 3 else "")
        raise UnsafePathError(
            f"{uri} holds links that lead outside its artifacts ({shown}), so it is not "
            "downloaded: what they point at is not part of the model. Re-log the model with "
            "the files themselves."
        )


def _predict_raw(model: PyFuncModel, model_input: ModelInput) -> tuple[Any, float]:
    """Predict with MLflow's signature enforcement: the output as the model gave it, the seconds."""
    started = time.perf_counter()
    try:
        raw = model.predict(model_input.data, params=model_input.params)
    except MlflowException as exc:
        message = readable_enforcement_error(
            exc.message, model_input.data, model.metadata.get_input_schema()
        )
        raise PredictionError(message) from exc
    except MemoryError:
        raise  # the worker reports it with its memory limit
    except Exception as exc:  # model code can raise anything; the user needs its message
        cause = external_cause(exc)
        if cause is not None:
            raise PredictionError(f"The model raised {type(exc).__name__}: {exc}. {cause}") from exc
        raise PredictionError(
            f"The model raised {type(exc).__name__}: {exc}. The input passed the signature's "
            "checks, so the model's own code refused these values: change the values it names, "
            "or handle them in the model (Customize wraps it with your own pre-processing)."
        ) from exc
    return raw, time.perf_counter() - started


def readable_enforcement_error(message: str, data: Any = None, schema: Schema | None = None) -> str:
    """MLflow's schema messages, cut to what a user acts on. With the data and the input schema,
    a value MLflow refused is named with its column and row."""
    text = message.strip()
    # MLflow prints the whole input and schema before its reason: keep the reason.
    enforced = re.search(
        r"^Failed to enforce schema of data .* with schema .*?Error: (.*)$", text, re.S
    )
    reason = enforced.group(1).strip() if enforced else text
    reason = reason.removeprefix("Failed to validate serving input: ")
    missing = re.search(r"Model is missing inputs (.*)", reason, re.S)
    if missing:
        return f"The input lacks columns the model requires: {missing.group(1).strip()}"
    refused = re.search(
        r"Incompatible input types for column (.+?)\. Can not safely convert"
        r"|Failed to convert column (.+?) from type",
        reason,
    )
    if refused and isinstance(data, pd.DataFrame):
        column = refused.group(1) or refused.group(2)
        found = _refused_value(data, column, schema)
        if found is not None:
            return found
    if reason.startswith("Invalid parameters found"):
        return f"The params do not fit the model's signature: {reason}"
    return f"The input does not fit the model's signature: {reason}"


def _refused_value(frame: pd.DataFrame, column: str, schema: Schema | None) -> str | None:
    """The message naming the value MLflow's enforcement refused in `column`, if it can be found.

    First the value a cast cannot convert (text in a number column, a missing value in an integer
    column), as the payload parser names it. Else MLflow refused the column for its dtype alone
    (it converts whole columns and never, say, float64 to int64): the first row of that column.
    """
    if column not in frame.columns or schema is None or not schema.has_input_names():
        return None
    spec = schema.input_dict().get(column)
    if spec is None or not isinstance(spec.type, DataType):
        return None
    expected = spec.type.name
    found = first_failed_cast(frame, column, schema)
    if found is not None:
        return bad_value_message(column, expected, *found)
    series = frame[column]
    if not len(series):
        return None
    first = series.iloc[0]
    first = first.item() if isinstance(first, np.generic) else first
    return (
        f"Column '{column}' expects {expected}, but it holds {series.dtype} values (row 1, "
        f"{ROWS_COUNTED}, has {first!r}), and MLflow does not convert {series.dtype} to "
        f"{expected} when it predicts: send {expected} values."
    )


def predictions_frame(raw: Any) -> pd.DataFrame:
    """Any pyfunc output as a DataFrame with one row per input row.

    Arrays keep their dtype: pandas would otherwise turn an array of Python strings into its
    string dtype, which costs 5 ms per 100,000 rows and shows the same text.
    """
    if isinstance(raw, pd.DataFrame):
        if isinstance(raw.index, pd.RangeIndex) and raw.index.start == 0 and raw.index.step == 1:
            return raw
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
        return pd.DataFrame(array[:, None], columns=["prediction"], dtype=array.dtype, copy=False)
    if array.ndim == 2:
        columns = [f"prediction_{i}" for i in range(array.shape[1])]
        return pd.DataFrame(array, columns=columns, dtype=array.dtype, copy=False)
    return pd.DataFrame({"prediction": list(array)})


@dataclass(frozen=True)
class RawPrediction:
    """A prediction before its output becomes a table: a numpy array stays an array, which
    costs far less than a DataFrame to send from the worker; any other output is the table."""

    output: np.ndarray | pd.DataFrame
    load_seconds: float
    predict_seconds: float
    from_cache: bool
    warnings: list[str] = field(default_factory=list)

    def prediction(self) -> Prediction:
        return Prediction(
            output=predictions_frame(self.output),
            load_seconds=self.load_seconds,
            predict_seconds=self.predict_seconds,
            from_cache=self.from_cache,
            warnings=list(self.warnings),
        )


def predict_raw(cache: ModelCache, model_path: Path, model_input: ModelInput) -> RawPrediction:
    """Load (or reuse) the model, check the params, predict; the output as the model gave it
    when that is a numpy array, else as a table."""
    model, load_seconds, from_cache = cache.get(str(model_path))
    try:
        param_warnings = check_params(model_input.params, model.metadata.get_params_schema())
    except PayloadError as exc:
        raise PredictionError(str(exc)) from exc
    raw, predict_seconds = _predict_raw(model, model_input)
    raw, shape_warnings = finished_output(raw, model_input.data)
    return RawPrediction(
        output=raw,
        load_seconds=load_seconds,
        predict_seconds=predict_seconds,
        from_cache=from_cache,
        # The parser may have said the same about the params already: once is enough.
        warnings=list(dict.fromkeys([*model_input.warnings, *param_warnings, *shape_warnings])),
    )


def finished_output(raw: Any, data: Any) -> tuple[np.ndarray | pd.DataFrame, list[str]]:
    """A model's output as an array or a table, and what to say about its shape."""
    shape_warnings = unordered_output_warnings(raw)
    if not isinstance(raw, np.ndarray):
        raw = predictions_frame(raw)
    if not shape_warnings:
        shape_warnings = row_count_warnings(raw, input_rows(data))
    return raw, shape_warnings


def input_rows(data: Any) -> int | None:
    """How many rows (first-axis items) a model input has; None when that is not defined."""
    if isinstance(data, pd.DataFrame | np.ndarray):
        return len(data) if np.ndim(data) else None
    if isinstance(data, dict) and data:
        lengths = {len(v) if np.ndim(v) else None for v in data.values()}
        return lengths.pop() if len(lengths) == 1 else None
    return None


def unordered_output_warnings(raw: Any) -> list[str]:
    """Outputs that cannot become one prediction per input row, said before the table shows
    them as one row (a served endpoint would return the same)."""
    if isinstance(raw, set | frozenset):
        return [
            f"The model returned a Python set of {len(raw)} value(s): a set has no order, so "
            "its values cannot be matched to input rows (and a server cannot send it as JSON). "
            "Return a list, an array or a DataFrame with one prediction per input row."
        ]
    if isinstance(raw, dict) and raw:
        lengths = {str(k): len(v) if np.ndim(v) else 1 for k, v in raw.items()}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"'{k}': {n}" for k, n in list(lengths.items())[:5])
            return [
                f"The model returned a dict whose values have different lengths ({listed}), so "
                "it is shown as one row. Return one value per input row under every key."
            ]
    return []


def row_count_warnings(output: np.ndarray | pd.DataFrame, rows: int | None) -> list[str]:
    output_rows = len(output) if np.ndim(output) else 1
    if rows is None or output_rows == rows:
        return []
    return [
        f"The model returned {output_rows} prediction row(s) for {rows} input row(s), so they "
        "are not shown beside the inputs. An endpoint would return the same: check that the "
        "model predicts one row per input row."
    ]


def predict_in_process(cache: ModelCache, model_path: Path, model_input: ModelInput) -> Prediction:
    return predict_raw(cache, model_path, model_input).prediction()
