"""Checks MLflow leaves to prediction time, and warnings about the casts it makes silently.

After a body is parsed (payloads.py): the columns or tensors a signature requires are there, with
the shapes it gives; strings a model expects stay strings; and values the casts to the schema
changed without an error (1.7 into a long column becomes 1; "false" into a boolean becomes True)
become warnings next to the parsed data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.types import Schema
from mlflow.types.schema import DataType, TensorSpec

from deploystudio.errors import PayloadError
from deploystudio.payload_formats import ModelData
from deploystudio.payload_messages import ROWS_COUNTED, is_missing, quoted

# Casts to these column types can change a value without an error (1.7 -> 1, "false" -> True).
_LOSSY_COLUMN_TYPES = (DataType.integer, DataType.long, DataType.boolean)


def checked_data(data: ModelData, schema: Schema | None, warnings: list[str]) -> ModelData:
    """Checks MLflow leaves to prediction time, and one dtype for string columns."""
    if schema is None:
        return data
    if isinstance(data, pd.DataFrame):
        if is_column_schema(schema):
            _check_names(list(data.columns), schema, "column")
            return _string_columns(data, schema, warnings)
        return data
    if schema.is_tensor_spec():
        if isinstance(data, np.ndarray):
            _check_shape("The tensor", data, schema.inputs[0])
        else:
            _check_names(list(data), schema, "named tensor")
            specs = schema.input_dict()
            for name, array in data.items():
                if name in specs:
                    _check_shape(f"Tensor '{name}'", array, specs[name])
    elif isinstance(data, dict) and schema.has_input_names():
        _check_names(list(data), schema, "input")
    return data


def _check_names(present: list[Any], schema: Schema, noun: str) -> None:
    names = {str(p) for p in present}
    missing = [n for n in schema.required_input_names() if n not in names]
    if missing:
        expected = ", ".join(str(n) for n in schema.input_names())
        given = ", ".join(str(p) for p in present) or "none"
        raise PayloadError(
            f"Missing required {noun}{'s' if len(missing) > 1 else ''} {quoted(missing)}. "
            f"The model expects: {expected}; the payload has: {given}. Add the missing "
            f"{noun}s or fix their spelling."
        )


def _check_shape(what: str, array: np.ndarray, spec: Any) -> None:
    if not isinstance(spec, TensorSpec):
        return
    expected = tuple(spec.shape)
    fits = len(expected) == array.ndim and all(
        e == -1 or e == a for e, a in zip(expected, array.shape, strict=True)
    )
    if not fits:
        raise PayloadError(
            f"{what} has shape {tuple(array.shape)}, but the model expects {expected} "
            "(-1 means any size). Reshape the data to match, or check that no row lost a level "
            "of nesting."
        )


def _string_columns(frame: pd.DataFrame, schema: Schema, warnings: list[str]) -> pd.DataFrame:
    """MLflow's JSON path gives string columns pandas' string dtype, its CSV path and empty
    tables give `object`: use the string dtype everywhere, so one payload in any format is the
    same frame. MLflow passes a non-string value through unchanged: say so."""
    for name, spec in schema.input_dict().items():
        if not isinstance(spec.type, DataType) or spec.type != DataType.string:
            continue
        if name not in frame.columns:
            continue
        column = frame[name]
        if column.dtype != object:
            continue
        odd = next(
            ((i, v) for i, v in enumerate(column) if not (isinstance(v, str) or is_missing(v))),
            None,
        )
        if odd is None:
            frame[name] = column.astype("str")
        else:
            warnings.append(
                f"Column '{name}' expects strings, but row {odd[0] + 1} ({ROWS_COUNTED}) holds "
                f"{odd[1]!r} ({type(odd[1]).__name__}), which MLflow passes on unchanged: "
                "quote it."
            )
    return frame


def may_coerce(schema: Schema | None) -> bool:
    """Whether casting to `schema` can change values without an error (to integer or boolean)."""
    if schema is None:
        return False
    return any(
        spec.type.kind in "iub"
        if isinstance(spec, TensorSpec)
        else isinstance(spec.type, DataType) and spec.type in _LOSSY_COLUMN_TYPES
        for spec in schema.inputs
    )


def coercion_warnings(raw: Any, cast: Any, schema: Schema | None) -> list[str]:
    if schema is None:
        return []
    if isinstance(raw, pd.DataFrame) and isinstance(cast, pd.DataFrame):
        warnings = []
        for name, spec in schema.input_dict().items() if schema.has_input_names() else []:
            target = spec.type
            if not isinstance(target, DataType) or target not in _LOSSY_COLUMN_TYPES:
                continue
            if name not in raw.columns or name not in cast.columns:
                continue
            change = _first_change(raw[name].tolist(), cast[name].tolist())
            if change is not None:
                row, before, after = change
                warnings.append(
                    f"Column '{name}' expects {target.name} values: {before!r} in row {row + 1} "
                    f"({ROWS_COUNTED}) became {after!r}. Send {target.name} values to be sure "
                    "what the model gets."
                )
        return warnings
    if isinstance(raw, np.ndarray) and isinstance(cast, np.ndarray):
        return _tensor_warning("the tensor", raw, cast)
    if isinstance(raw, dict) and isinstance(cast, dict):
        return [
            w
            for name in cast
            if name in raw
            for w in _tensor_warning(f"tensor '{name}'", np.asarray(raw[name]), cast[name])
        ]
    return []


def _tensor_warning(what: str, raw: np.ndarray, cast: np.ndarray) -> list[str]:
    if cast.dtype.kind not in "iub" or raw.shape != cast.shape or raw.dtype == cast.dtype:
        return []
    try:
        changed = np.flatnonzero(np.asarray(raw != cast))
    except (TypeError, ValueError):
        return []
    if not changed.size:
        return []
    position = int(changed[0])
    before, after = raw.ravel()[position].item(), cast.ravel()[position].item()
    where = tuple(int(i) for i in np.unravel_index(position, cast.shape))
    return [
        f"In {what}, {before!r} at {where} became {after!r} ({cast.dtype}, as the model's "
        f"signature says). Send {cast.dtype} values to be sure what the model gets."
    ]


def _first_change(before: list[Any], after: list[Any]) -> tuple[int, Any, Any] | None:
    """The first value a cast changed, compared as Python values (1.0 == 1 and 1 == True
    are no change; 1.7 -> 1 and 'false' -> True are)."""
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        if is_missing(b) and is_missing(a):
            continue
        try:
            changed = bool(b != a)
        except (TypeError, ValueError):
            changed = True
        if changed:
            return i, b, a
    return None


def is_column_schema(schema: Schema) -> bool:
    return schema.has_input_names() and not schema.is_tensor_spec()
