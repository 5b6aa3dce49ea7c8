"""Predictions in a model's own environment (issue 19, part 4): the worker's side runs under
whatever that environment has (MLflow 2.x or 3.x, pandas 1.x to 3.x, numpy 1.x or 2.x, maybe no
pyarrow), so it imports only the standard library at module level, and nothing of the app
beyond `deploystudio.worker` (which imports `deploystudio.errors` and the replies' encoder).

What crosses to such a worker is plain Python (lists, strings, numbers), never a pickled numpy
array or DataFrame: numpy 2 pickles name `numpy._core`, which numpy 1 cannot import, and a
pandas 3 frame's pickle does not load in pandas 1. What comes back goes through the replies'
encoder (JSON plus raw buffers), which reads the same in every version.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

# Loaded models, for the worker's whole life (only ever filled in the worker process).
_MODELS: dict[str, Any] = {}


# ----------------------------------------------------------------------------- app side


def portable_input(data: Any, params: dict[str, Any] | None) -> dict[str, Any]:
    """A model input (a DataFrame, an array or named arrays) as plain data with its dtypes, for
    `predict_portable` in another environment."""
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        columns = [
            {"name": str(name), "dtype": str(data[name].dtype), "values": _plain(data[name])}
            for name in data.columns
        ]
        value: dict[str, Any] = {"kind": "dataframe", "columns": columns}
    elif isinstance(data, np.ndarray):
        value = {"kind": "tensor", "dtype": data.dtype.str, "values": data.tolist()}
    else:
        value = {
            "kind": "tensors",
            "items": {k: {"dtype": v.dtype.str, "values": v.tolist()} for k, v in data.items()},
        }
    # params are JSON values already (parsed from a request); a round trip makes sure.
    value["params"] = json.loads(json.dumps(params, default=str)) if params else None
    return value


def _plain(column: Any) -> list:
    # NaN and NA become None; datetimes their ISO text (pandas parses it back with the dtype).
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        return [None if pd.isna(v) else v.isoformat() for v in column]
    return [None if _missing(v) else (v.item() if hasattr(v, "item") else v) for v in column]


def _missing(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or an array in a cell
        return False


# ----------------------------------------------------------------------------- worker side


def _rebuild(portable: dict[str, Any]) -> Any:
    import numpy as np
    import pandas as pd

    kind = portable["kind"]
    if kind == "tensor":
        return np.array(portable["values"], dtype=np.dtype(portable["dtype"]))
    if kind == "tensors":
        return {
            k: np.array(v["values"], dtype=np.dtype(v["dtype"]))
            for k, v in portable["items"].items()
        }
    frame = pd.DataFrame({c["name"]: pd.Series(c["values"], dtype=object) for c in
                          portable["columns"]})
    for column in portable["columns"]:
        try:
            frame[column["name"]] = frame[column["name"]].astype(column["dtype"])
        except (TypeError, ValueError):  # a dtype this pandas does not know, or NaN in ints
            frame[column["name"]] = frame[column["name"]].infer_objects()
    return frame


def predict_portable(model_path: str, portable: dict[str, Any]) -> dict[str, Any]:
    """Load (or reuse) the model with this environment's MLflow and predict; the output as the
    model gave it, with the seconds each step took."""
    import mlflow.pyfunc

    from deploystudio.errors import PredictionError
    from deploystudio.worker.model_errors import external_cause

    started = time.perf_counter()
    model = _MODELS.get(model_path)
    from_cache = model is not None
    if model is None:
        model = mlflow.pyfunc.load_model(str(Path(model_path)))
        _MODELS.clear()  # one model at a time, as the app's cache for previews
        _MODELS[model_path] = model
    load_seconds = 0.0 if from_cache else time.perf_counter() - started
    data = _rebuild(portable)
    params = portable.get("params")
    started = time.perf_counter()
    try:
        raw = model.predict(data, params=params) if params else model.predict(data)
    except MemoryError:
        raise
    except Exception as exc:  # model code and MLflow's checks can raise anything
        cause = external_cause(exc)
        said = f" {cause}" if cause else ""
        raise PredictionError(f"The model raised {type(exc).__name__}: {exc}.{said}") from exc
    return {
        "output": raw,
        "load_seconds": load_seconds,
        "predict_seconds": time.perf_counter() - started,
        "from_cache": from_cache,
    }


def versions() -> dict[str, str | None]:
    """What this environment runs, for a caption and for tests."""
    import importlib.metadata
    import platform

    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("mlflow", "pandas", "numpy", "scikit-learn", "pyarrow"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found
