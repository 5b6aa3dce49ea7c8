"""Request formats <-> model input, built on MLflow's own parsing and serialisation.

What MLflow provides (and we call, so a body that works here works on its scoring server):
- `mlflow.pyfunc.scoring_server.infer_and_parse_data`: the four JSON formats of the MLflow
  scoring server (`dataframe_split`, `dataframe_records`, `instances`, `inputs`), with type casts
  to a signature's input schema. It parses the data only: `params` is split off by the server
  before the call, and here too.
- `parse_csv_input` and `parse_parquet_input` from the same module: the server's CSV and Parquet
  readers; `mlflow.utils.proto_json_utils.cast_df_types_according_to_schema` and
  `convert_data_type`: the casts the JSON path applies, reused for Parquet and NPY files.
- `mlflow.models.convert_input_example_to_serving_input`: MLflow's writer of serving bodies
  (numpy types, NaN in arrays, base64 bytes, datetimes, params validated and included).

What we add:
- Azure ML's `input_data` wrapper. MLflow lacks only the wrapper: we translate the Azure body
  into the equivalent MLflow body and let MLflow parse it.
- NPY files (never unpickled) and bare JSON arrays for tensors; format detection.
- Checks MLflow leaves to prediction time (missing columns, tensor shapes) and warnings about its
  silent coercions (1.7 into a long column becomes 1; "false" into a boolean becomes True).
- One error type, `PayloadError`, whose message says where the problem is (line, column, byte
  offset, key, size) and what to do; never a traceback.
"""

from __future__ import annotations

import functools
import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import convert_input_example_to_serving_input
from mlflow.models.signature import ModelSignature
from mlflow.pyfunc.scoring_server import (
    SCORING_PROTOCOL_CHANGE_INFO,
    infer_and_parse_data,
    parse_csv_input,
    parse_parquet_input,
)
from mlflow.types import Schema
from mlflow.types.schema import DataType, ParamSchema, ParamSpec, TensorSpec
from mlflow.utils.proto_json_utils import cast_df_types_according_to_schema, convert_data_type

from deploystudio.errors import PayloadError

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
NPY_MAGIC = b"\x93NUMPY"
PARQUET_MAGIC = b"PAR1"
TOO_DEEP = (
    "The body is nested too deeply to read (over 1,000 levels of brackets). Send the data as "
    "rows of values, such as [[1.0, 2.0], [3.0, 4.0]]."
)
PARAMS_KEY = "params"
# Azure's split orientation: `columns` and `data`, optionally `index` (pandas' split keys).
_SPLIT_KEYS = frozenset({"columns", "index", "data"})


class PayloadFormat(Enum):
    AZURE_INPUT_DATA = "input_data"
    DATAFRAME_SPLIT = "dataframe_split"
    DATAFRAME_RECORDS = "dataframe_records"
    INSTANCES = "instances"
    INPUTS = "inputs"
    CSV = "csv"
    PARQUET = "parquet"
    NPY = "npy"
    JSON_ARRAY = "json_array"

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def json_key(self) -> str | None:
        """The top-level key of a JSON body in this format; None for files and bare arrays."""
        return self.value if self in _JSON_OBJECT_FORMATS else None

    @property
    def is_binary(self) -> bool:
        return self in (PayloadFormat.PARQUET, PayloadFormat.NPY)

    @property
    def carries_params(self) -> bool:
        """Files and bare arrays have no place for `params`: writing them drops the params."""
        return self in _JSON_OBJECT_FORMATS

    @property
    def file_extension(self) -> str:
        return _EXTENSIONS[self]

    @property
    def media_type(self) -> str:
        return _MEDIA_TYPES[self]


_JSON_OBJECT_FORMATS = (
    PayloadFormat.AZURE_INPUT_DATA,
    PayloadFormat.DATAFRAME_SPLIT,
    PayloadFormat.DATAFRAME_RECORDS,
    PayloadFormat.INSTANCES,
    PayloadFormat.INPUTS,
)
_INPUT_KEYS = {f.value: f for f in _JSON_OBJECT_FORMATS}
_LABELS = {
    PayloadFormat.AZURE_INPUT_DATA: "Azure ML input_data",
    PayloadFormat.DATAFRAME_SPLIT: "MLflow dataframe_split",
    PayloadFormat.DATAFRAME_RECORDS: "MLflow dataframe_records",
    PayloadFormat.INSTANCES: "MLflow instances",
    PayloadFormat.INPUTS: "MLflow inputs",
    PayloadFormat.CSV: "CSV file",
    PayloadFormat.PARQUET: "Parquet file",
    PayloadFormat.NPY: "NPY file",
    PayloadFormat.JSON_ARRAY: "JSON array",
}
_EXTENSIONS = {
    **{f: ".json" for f in _JSON_OBJECT_FORMATS},
    PayloadFormat.CSV: ".csv",
    PayloadFormat.PARQUET: ".parquet",
    PayloadFormat.NPY: ".npy",
    PayloadFormat.JSON_ARRAY: ".json",
}
_MEDIA_TYPES = {
    **{f: "application/json" for f in _JSON_OBJECT_FORMATS},
    PayloadFormat.CSV: "text/csv",
    PayloadFormat.PARQUET: "application/vnd.apache.parquet",
    PayloadFormat.NPY: "application/octet-stream",
    PayloadFormat.JSON_ARRAY: "application/json",
}
# Only extensions that name one format; `.json` could be any JSON format, so its content decides.
_BY_EXTENSION = {
    ".csv": PayloadFormat.CSV,
    ".parquet": PayloadFormat.PARQUET,
    ".pq": PayloadFormat.PARQUET,
    ".npy": PayloadFormat.NPY,
}
# Casts to these column types can change a value without an error (1.7 -> 1, "false" -> True).
_LOSSY_COLUMN_TYPES = (DataType.integer, DataType.long, DataType.boolean)
# How rows are numbered in messages: as a user counts them in a table or a CSV file.
ROWS_COUNTED = "data rows counted from 1"
# Rows converted at once while looking for the value a conversion refuses.
_SEARCH_CHUNK_ROWS = 4096
_ACCEPTED_KEYS_TEXT = (
    "exactly one of " + ", ".join(_INPUT_KEYS) + f", plus an optional '{PARAMS_KEY}' object"
)

ModelData = pd.DataFrame | np.ndarray | dict[str, np.ndarray]


@dataclass
class ModelInput:
    """What a model's `predict(data, params=params)` receives.

    `warnings` lists values that MLflow's casts to the schema changed silently (the server does
    the same without saying so); a page shows them next to the parsed data.
    """

    data: ModelData
    params: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """One of: dataframe, tensor (one ndarray), tensors (named ndarrays)."""
        if isinstance(self.data, pd.DataFrame):
            return "dataframe"
        if isinstance(self.data, np.ndarray):
            return "tensor"
        return "tensors"


# ----------------------------------------------------------------------------- detection


def detect_format(body: bytes | str, filename: str | None = None) -> PayloadFormat:
    """The format of `body`: by the file extension first, then by content (NPY and Parquet magic
    bytes, a JSON array, the top-level key of a JSON object, else CSV)."""
    return _sniff(body, filename)[0]


def _sniff(body: bytes | str, filename: str | None) -> tuple[PayloadFormat, Any]:
    """The format, and the parsed JSON when detecting meant parsing it (so it is parsed once)."""
    if filename:
        suffix = Path(filename).suffix.lower()
        if suffix in _BY_EXTENSION:
            return _BY_EXTENSION[suffix], None
        if suffix == ".npz":
            raise PayloadError(
                f"'{filename}' is an NPZ archive, which is not supported: save one array with "
                "numpy.save(...) as an .npy file, or send named tensors as JSON."
            )
    _reject_empty(body)
    if isinstance(body, bytes):
        if body.startswith(NPY_MAGIC):
            return PayloadFormat.NPY, None
        if body.startswith(PARQUET_MAGIC):
            return PayloadFormat.PARQUET, None
    text = _decode(body, "The body")
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        parsed = _load_json(text)
        return _json_format(parsed), parsed
    # Not an object or array: CSV, unless it is a lone JSON value such as `42` or `"text"`.
    try:
        parsed = json.loads(stripped)
    except ValueError:
        return PayloadFormat.CSV, None
    raise _not_an_object(parsed)


def _json_format(parsed: Any) -> PayloadFormat:
    if isinstance(parsed, list):
        return PayloadFormat.JSON_ARRAY
    if not isinstance(parsed, dict):
        raise _not_an_object(parsed)
    return _input_key(parsed)


def _input_key(body: dict) -> PayloadFormat:
    """The one input key of a JSON object body; unknown keys are errors (a typo such as
    'param' would otherwise be dropped without a word, as MLflow's server does)."""
    if _looks_split(body):
        # A bare table in split orientation: how MLflow 1.x saved input_example.json.
        return PayloadFormat.DATAFRAME_SPLIT
    unknown = [k for k in body if k not in _INPUT_KEYS and k != PARAMS_KEY]
    if unknown:
        raise PayloadError(
            f"Unknown top-level key {_quoted(unknown)}. Accepted keys: {_ACCEPTED_KEYS_TEXT}."
        )
    present = [k for k in body if k in _INPUT_KEYS]
    if not present:
        raise PayloadError(f"The body has no input key. Add {_ACCEPTED_KEYS_TEXT}.")
    if len(present) > 1:
        raise PayloadError(
            f"The body has {len(present)} input keys at once ({_quoted(present)}); keep exactly "
            "one of them."
        )
    return _INPUT_KEYS[present[0]]


# ----------------------------------------------------------------------------- parsing


def parse_payload(
    body: bytes | str,
    schema: Schema | None = None,
    payload_format: PayloadFormat | None = None,
    filename: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ModelInput:
    """Read a request body or uploaded file into model input.

    With `schema` (a signature's `inputs`), values are cast as MLflow's scoring server casts
    them, and missing columns, missing named tensors and tensor shapes are checked now rather
    than at prediction time. A whole `ModelSignature` is taken too: its inputs are used, and
    `params` are checked against its params (see `check_params`).
    Without `payload_format`, the format is detected.
    """
    size = len(body) if isinstance(body, bytes) else len(body.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise PayloadError(
            f"The payload is {_size_text(size)}, over the limit of {_size_text(max_bytes)}. "
            "Send fewer rows per request."
        )
    _reject_empty(body)
    # A whole signature also says which params the model takes; an input schema alone does not.
    params_declared = isinstance(schema, ModelSignature)
    params_schema = schema.params if params_declared else None
    if params_declared:
        schema = schema.inputs
    parsed = None
    if payload_format is None:
        payload_format, parsed = _sniff(body, filename)

    if payload_format is PayloadFormat.NPY:
        return _parse_npy(_binary(body, payload_format), schema)
    if payload_format is PayloadFormat.PARQUET:
        return _parse_parquet(_binary(body, payload_format), schema)
    if payload_format is PayloadFormat.CSV:
        return _parse_csv(body, schema)

    if parsed is None:
        parsed = _load_json(_decode(body, "The body"))
    params = None
    if payload_format is PayloadFormat.JSON_ARRAY:
        if not isinstance(parsed, list):
            raise PayloadError(
                f"A JSON array body must be a list such as [[1.0, 2.0]], but this one is "
                f"{_json_type(parsed)}."
            )
        mlflow_body = {"inputs": parsed}
    else:
        if not isinstance(parsed, dict):
            raise _not_an_object(parsed)
        found = _input_key(parsed)
        if found is not payload_format:
            raise PayloadError(
                f"The body uses '{found.value}', but {payload_format.label} was chosen: "
                f"wrap the data in '{payload_format.value}' or choose {found.label}."
            )
        params = parsed.get(PARAMS_KEY)
        if params is not None and not isinstance(params, dict):
            raise PayloadError(
                f"'{PARAMS_KEY}' must be a JSON object such as {{\"threshold\": 0.7}}, but it is "
                f"{_json_type(params)}."
            )
        value = parsed if _looks_split(parsed) else parsed[payload_format.value]
        mlflow_body = _mlflow_body(payload_format, value)
    param_warnings = check_params(params, params_schema) if params_declared else []
    data, warnings = _parse_with_mlflow(mlflow_body, schema, payload_format)
    return ModelInput(data=data, params=params, warnings=param_warnings + warnings)


def check_params(params: dict[str, Any] | None, params_schema: ParamSchema | None) -> list[str]:
    """Check `params` as `PyFuncModel.predict` will (MLflow's `ParamSpec.validate_param_spec`,
    one param at a time so the message can name it) and raise a `PayloadError` naming each
    invalid one. MLflow drops unknown params, and all params of a model whose signature
    declares none, with a log line only: the returned warnings say so to the user."""
    if not params:
        return []
    if params_schema is None:
        names = list(params)
        return [
            f"The model's signature declares no params, so MLflow ignores {_quoted(names)}: "
            f"{'it has' if len(names) == 1 else 'they have'} no effect on the predictions."
        ]
    specs = {spec.name: spec for spec in params_schema.params}
    accepted = ", ".join(_param_text(spec) for spec in specs.values())
    problems = []
    for name, value in params.items():
        spec = specs.get(str(name))
        if spec is None:
            continue
        try:
            ParamSpec.validate_param_spec(value, spec)
        except MlflowException:
            problems.append(
                f"Param '{name}' expects {_param_type_text(spec, article=True)}; got "
                f"{_value_text(value)}{'' if spec.shape else _kind_note(value)}."
            )
    if problems:
        raise PayloadError(" ".join(problems) + f" The model accepts: {accepted}.")
    return [
        f"Unknown param '{name}'; the model accepts: {accepted}. MLflow ignores params the "
        "signature does not declare, so it has no effect: check its spelling."
        for name in params
        if str(name) not in specs
    ]


def _param_type_text(spec: ParamSpec, article: bool = False) -> str:
    type_name = spec.dtype.name if isinstance(spec.dtype, DataType) else str(spec.dtype)
    if spec.shape is not None:
        return f"{'a ' if article else ''}list of {type_name}"
    if not article:
        return type_name
    return f"{'an' if type_name[:1] in 'aeiou' else 'a'} {type_name}"


def _param_text(spec: ParamSpec) -> str:
    return f"{spec.name} ({_param_type_text(spec)}, default {_value_text(spec.default)})"


def _kind_note(value: Any) -> str:
    if isinstance(value, list | dict):
        return f" ({_json_type(value)})"
    return ""


def _mlflow_body(payload_format: PayloadFormat, value: Any) -> dict[str, Any]:
    """The MLflow scoring body equivalent to one input value."""
    if payload_format is not PayloadFormat.AZURE_INPUT_DATA:
        return {payload_format.value: value}
    # Azure ML's `input_data` carries the same three shapes MLflow reads, under one key: a table in
    # pandas' split orientation is MLflow's `dataframe_split`; a list (one tensor) or an object of
    # named lists (named tensors) is MLflow's `inputs`. Only this wrapper is Azure's own.
    if isinstance(value, dict) and _looks_split(value):
        return {"dataframe_split": value}
    if isinstance(value, list | dict):
        return {"inputs": value}
    raise PayloadError(
        '\'input_data\' must be a table {"columns": [...], "data": [[...]]}, a list (one '
        "tensor) or an object of named lists (named tensors), but it is "
        f"{_json_type(value)}."
    )


def _looks_split(value: dict) -> bool:
    return {"columns", "data"} <= value.keys() <= _SPLIT_KEYS


def _parse_with_mlflow(
    mlflow_body: dict[str, Any], schema: Schema | None, payload_format: PayloadFormat
) -> tuple[ModelData, list[str]]:
    try:
        data = infer_and_parse_data(mlflow_body, schema)
        # The uncast parse, to see what the cast changed; only worth it if a cast can lose values.
        raw = infer_and_parse_data(mlflow_body, None) if _may_coerce(schema) else None
    except MlflowException as exc:
        uncast = lambda: infer_and_parse_data(mlflow_body, None)  # noqa: E731
        raise _readable(exc, payload_format, schema, uncast) from exc
    except (ValueError, TypeError) as exc:
        raise PayloadError(f"The {payload_format.label} body could not be read: {exc}") from exc
    data = _as_model_data(data, payload_format)
    warnings = _coercion_warnings(raw, data, schema) if raw is not None else []
    data = _finish(data, schema, warnings)
    return data, warnings


def _as_model_data(data: Any, payload_format: PayloadFormat) -> ModelData:
    if isinstance(data, pd.DataFrame | np.ndarray):
        return data
    if isinstance(data, dict):
        # MLflow casts a scalar value of a named input to a numpy scalar, not an array.
        return {str(name): np.asarray(value) for name, value in data.items()}
    # MLflow passes a list of objects under `inputs` through unchanged (for models with
    # type-hint signatures); a table of rows is `dataframe_records`.
    raise PayloadError(
        f"The {payload_format.label} body holds {_json_type(data)} of objects, not a tensor. "
        "Send rows of a table as 'dataframe_records', or named tensors as an object of lists."
    )


def _parse_csv(body: bytes | str, schema: Schema | None) -> ModelInput:
    text = _decode(body, "The CSV file")
    # The server's reader takes the column dtypes from a named column schema; tensors have none.
    columns = schema if schema is not None and _is_column_schema(schema) else None
    try:
        frame = parse_csv_input(io.StringIO(text), columns)
    except MlflowException as exc:
        raise _csv_error(exc, text, columns) from exc
    warnings: list[str] = []
    frame = _finish(frame, schema, warnings)
    return ModelInput(data=frame, warnings=warnings)


def _csv_error(exc: MlflowException, text: str, schema: Schema | None) -> PayloadError:
    """`parse_csv_input` wraps pandas' error in a long message; say what pandas found, where."""
    cause = exc.__context__ or exc
    detail = str(cause).strip()
    ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", detail)
    if ragged:
        expected, line, seen = ragged.groups()
        return PayloadError(
            f"Line {line} of the CSV has {seen} fields, but the lines before it have {expected}. "
            f"Check line {line} for an extra or missing comma, or a value with a comma that is "
            'not in double quotes ("a, b").'
        )
    if schema is not None and schema.has_input_names():
        found = _first_failed_csv_value(text, schema)
        if found is not None:
            name, row, value = found
            return PayloadError(bad_value_message(name, _expected_type(schema, name), row, value))
        column = re.search(r"in column (\d+)", detail)
        if column:
            header = pd.read_csv(io.StringIO(text), nrows=0).columns
            index = int(column.group(1))
            if index < len(header):
                name = header[index]
                return PayloadError(
                    f"Column '{name}' of the CSV cannot be read as "
                    f"{_expected_type(schema, name)}: {detail}. Fix its values, or check the "
                    "column against the model's signature."
                )
    return PayloadError(f"The CSV file could not be read: {detail}.")


def _parse_parquet(body: bytes, schema: Schema | None) -> ModelInput:
    if not body.startswith(PARQUET_MAGIC):
        raise PayloadError(
            "This is not a Parquet file (it does not start with the bytes 'PAR1'). Save the table "
            "with pandas.DataFrame.to_parquet(...), or choose another format."
        )
    try:
        raw = parse_parquet_input(io.BytesIO(body))
    except MlflowException as exc:
        detail = str(exc.__context__ or exc).strip()
        raise PayloadError(
            f"The Parquet file could not be read: {detail}. Save it again with "
            "pandas.DataFrame.to_parquet(...)."
        ) from exc
    warnings: list[str] = []
    frame = raw
    if schema is not None:
        # MLflow's server passes Parquet on uncast; cast as its JSON path does, for one behaviour.
        try:
            frame = cast_df_types_according_to_schema(raw.copy(), schema)
        except MlflowException as exc:
            raise _readable(exc, PayloadFormat.PARQUET, schema, lambda: raw) from exc
        warnings = _coercion_warnings(raw, frame, schema)
    return ModelInput(data=_finish(frame, schema, warnings), warnings=warnings)


def _parse_npy(body: bytes, schema: Schema | None) -> ModelInput:
    if not body.startswith(NPY_MAGIC):
        raise PayloadError(
            "This is not an NPY file (it does not start with the bytes '\\x93NUMPY'). Save the "
            "array with numpy.save(...), or choose another format."
        )
    try:
        # Never allow_pickle: an object array is a pickle, and unpickling runs the file's code.
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise PayloadError(
                "The NPY file holds Python objects (an object array), which can only be loaded "
                "by unpickling, and unpickling can run code hidden in the file: Deploy Studio "
                "never does that. Save a numeric array instead, for example "
                "numpy.save(path, array.astype('float32'))."
            ) from exc
        raise PayloadError(f"The NPY file could not be read: {exc}.") from exc
    warnings: list[str] = []
    if schema is not None and schema.is_tensor_spec() and not schema.has_input_names():
        raw, spec = array, schema.inputs[0]
        try:
            array = convert_data_type(array, spec)
        except MlflowException as exc:
            raise _readable(exc, PayloadFormat.NPY, schema) from exc
        warnings = _coercion_warnings(raw, array, schema)
    return ModelInput(data=_finish(array, schema, warnings), warnings=warnings)


# ----------------------------------------------------------------------------- schema checks


def _finish(data: ModelData, schema: Schema | None, warnings: list[str]) -> ModelData:
    """Checks MLflow leaves to prediction time, and one dtype for string columns."""
    if schema is None:
        return data
    if isinstance(data, pd.DataFrame):
        if _is_column_schema(schema):
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
            f"Missing required {noun}{'s' if len(missing) > 1 else ''} {_quoted(missing)}. "
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
            ((i, v) for i, v in enumerate(column) if not (isinstance(v, str) or _is_missing(v))),
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


# ----------------------------------------------------------------------------- coercion warnings


def _may_coerce(schema: Schema | None) -> bool:
    """Whether casting to `schema` can change values without an error (to integer or boolean)."""
    if schema is None:
        return False
    return any(
        spec.type.kind in "iub"
        if isinstance(spec, TensorSpec)
        else isinstance(spec.type, DataType) and spec.type in _LOSSY_COLUMN_TYPES
        for spec in schema.inputs
    )


def _coercion_warnings(raw: Any, cast: Any, schema: Schema | None) -> list[str]:
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
        if _is_missing(b) and _is_missing(a):
            continue
        try:
            changed = bool(b != a)
        except (TypeError, ValueError):
            changed = True
        if changed:
            return i, b, a
    return None


# ----------------------------------------------------------------------------- writing


def formats_for(model_input: ModelInput) -> list[PayloadFormat]:
    """The formats `write_payload` can write this input in, in `PayloadFormat` order."""
    data = model_input.data
    if isinstance(data, pd.DataFrame):
        usable = {
            PayloadFormat.AZURE_INPUT_DATA,
            PayloadFormat.DATAFRAME_SPLIT,
            PayloadFormat.CSV,
        }
        if len(data):  # records carry the column names inside rows: none without rows
            usable.add(PayloadFormat.DATAFRAME_RECORDS)
        if all(isinstance(c, str) for c in data.columns):  # Parquet names columns by string
            usable.add(PayloadFormat.PARQUET)
    elif isinstance(data, np.ndarray):
        usable = {PayloadFormat.AZURE_INPUT_DATA, PayloadFormat.INPUTS, PayloadFormat.INSTANCES}
        if data.ndim:
            usable.add(PayloadFormat.JSON_ARRAY)
        if data.dtype != object:  # an object array would need pickle
            usable.add(PayloadFormat.NPY)
    else:
        usable = {PayloadFormat.INPUTS}
        if not _looks_split(data):  # Azure would read {"columns", "data"} tensors as a table
            usable.add(PayloadFormat.AZURE_INPUT_DATA)
        lengths = {len(a) if np.ndim(a) else None for a in data.values()}
        if len(lengths) == 1 and next(iter(lengths)):  # instances are rows: one length for all
            usable.add(PayloadFormat.INSTANCES)
    return [f for f in PayloadFormat if f in usable]


def write_payload(model_input: ModelInput, payload_format: PayloadFormat) -> str | bytes:
    """The body or file for `model_input` in `payload_format`: text for CSV and JSON, bytes for
    Parquet and NPY. JSON bodies include `params`; files and bare arrays cannot carry them.

    JSON is MLflow's (`convert_input_example_to_serving_input`), with NaN written as null: MLflow
    writes a bare `NaN` for a DataFrame's NaN, which is not JSON to most clients. Infinity stays as
    MLflow writes it (`Infinity`): JSON has no way to write it, and Python servers read it.
    """
    usable = formats_for(model_input)
    if payload_format not in usable:
        raise PayloadError(
            f"This input ({model_input.kind}) cannot be written as {payload_format.label}. It "
            f"can be written as: {', '.join(f.label for f in usable)}."
        )
    data = model_input.data
    if payload_format is PayloadFormat.CSV:
        # CRLF, as RFC 4180 says: Python's csv writer quotes a field only if it holds a character
        # of the line terminator, so with "\n" a value holding a lone "\r" would break its row.
        return data.to_csv(index=False, lineterminator="\r\n")
    if payload_format is PayloadFormat.PARQUET:
        buffer = io.BytesIO()
        try:
            data.to_parquet(buffer, index=False)
        except (ValueError, TypeError, ImportError) as exc:  # pyarrow errors subclass these
            raise PayloadError(
                f"This table cannot be written as Parquet: {exc}. Give each column one type."
            ) from exc
        return buffer.getvalue()
    if payload_format is PayloadFormat.NPY:
        buffer = io.BytesIO()
        np.save(buffer, data, allow_pickle=False)
        return buffer.getvalue()

    serving = _mlflow_serving_body(model_input)
    if payload_format is PayloadFormat.JSON_ARRAY:
        return json.dumps(serving["inputs"], ensure_ascii=False)
    if isinstance(data, pd.DataFrame):
        split = serving["dataframe_split"]
        # MLflow leaves out default (0..n-1) column labels; Azure and records need them.
        columns = split.get("columns", list(range(data.shape[1])))
        if payload_format is PayloadFormat.DATAFRAME_RECORDS:
            value: Any = [dict(zip(columns, row, strict=True)) for row in split["data"]]
        elif payload_format is PayloadFormat.AZURE_INPUT_DATA:
            value = {"columns": columns, "data": split["data"]}
            if not data.index.equals(pd.RangeIndex(len(data))):  # Azure's index is optional
                value["index"] = data.index.tolist()
        else:
            value = split
    else:
        value = serving["inputs"]
        if payload_format is PayloadFormat.INSTANCES and isinstance(value, dict):
            # TF-serving row format: one object per row, which MLflow stacks back into arrays.
            count = len(next(iter(value.values())))
            value = [{name: v[i] for name, v in value.items()} for i in range(count)]
    body = {payload_format.value: value}
    if PARAMS_KEY in serving:
        body[PARAMS_KEY] = serving[PARAMS_KEY]
    return json.dumps(body, ensure_ascii=False)


def _mlflow_serving_body(model_input: ModelInput) -> dict[str, Any]:
    """MLflow's serving body (`dataframe_split` or `inputs`, plus `params`) as a dict."""
    example: Any = model_input.data
    if model_input.params:
        example = (model_input.data, model_input.params)
    try:
        text = convert_input_example_to_serving_input(example)
    except MlflowException as exc:
        raise PayloadError(f"MLflow cannot write this input: {exc.message}") from exc
    return _nan_to_null(json.loads(text))


def _nan_to_null(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list):
        return [_nan_to_null(v) for v in value]
    if isinstance(value, dict):
        return {k: _nan_to_null(v) for k, v in value.items()}
    return value


# ----------------------------------------------------------------------------- helpers


def _reject_empty(body: bytes | str) -> None:
    if not body.strip():
        raise PayloadError(
            "The payload is empty. Paste a JSON body, or upload a CSV, Parquet or NPY file."
        )


def _binary(body: bytes | str, payload_format: PayloadFormat) -> bytes:
    if isinstance(body, str):
        raise PayloadError(
            f"A {payload_format.label} is binary: upload the file itself rather than pasting text."
        )
    return body


def _decode(body: bytes | str, what: str) -> str:
    if isinstance(body, str):
        text = body
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = body.count(b"\n", 0, exc.start) + 1
            raise PayloadError(
                f"{what} is not UTF-8 text: byte 0x{body[exc.start]:02x} at byte offset "
                f"{exc.start} (line {line}) cannot be decoded ({exc.reason}). Save it as UTF-8 "
                "(in Excel: 'CSV UTF-8') and try again."
            ) from exc
    return text.removeprefix("\ufeff")  # a byte-order mark, as Excel writes


def _load_json(text: str) -> Any:
    # orjson parses a 100,000-row body (8.7 MB) 2.2x faster than the json module. It refuses the
    # NaN/Infinity literals that MLflow writes and Python servers accept, and its messages are
    # terser, so anything it rejects goes through json for the verdict and the message.
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(
            f"The body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}. "
            "Look for a missing comma, quote or bracket just before that point."
        ) from exc
    except ValueError as exc:
        # Python refuses integers of over 4,300 digits (sys.get_int_max_str_digits).
        raise PayloadError(
            f"The body could not be read as JSON: {exc}. Send numbers with fewer digits, or as "
            "floats such as 1e30."
        ) from exc
    except RecursionError as exc:
        # orjson stops at 1024 levels; json recurses once per level and overflows the stack.
        raise PayloadError(TOO_DEEP) from exc


def _not_an_object(parsed: Any) -> PayloadError:
    return PayloadError(
        f"The body is {_json_type(parsed)}, but it must be a JSON object such as "
        '{"dataframe_split": {"columns": [...], "data": [[...]]}} (or a JSON array for a tensor).'
    )


def _readable(
    exc: MlflowException,
    payload_format: PayloadFormat,
    schema: Schema | None,
    uncast: Callable[[], Any] | None = None,
) -> PayloadError:
    """MLflow's parse errors, said in terms of the payload, without its protocol-change essay.

    `uncast` gives the data as read before the signature's casts; it is called only to find
    the row and value that a failed cast choked on, which MLflow's message does not name.
    """
    message = exc.message.replace(SCORING_PROTOCOL_CHANGE_INFO, "").strip()
    message = message.removeprefix("Invalid input.").strip()
    if "RecursionError" in message:
        # json read a body of 1,025-1,000,000 levels that orjson refused; MLflow's parse then
        # overflowed the stack and wrapped the RecursionError's repr into its message.
        return PayloadError(TOO_DEEP)
    conversion = re.search(
        r"Failed to convert column (.+?) to type '([^']*)'\. Error: '(.*)'$", message, re.S
    )
    if conversion:
        column, pandas_type, error = conversion.groups()
        expected = _expected_type(schema, column) or pandas_type
        found = first_failed_cast(_call_or_none(uncast), column, schema)
        if found is not None:
            return PayloadError(bad_value_message(column, expected, *found))
        return PayloadError(
            f"Column '{column}' must hold {expected} values, but {_inner_error(error)}. Fix that "
            "value, or check the column against the model's signature."
        )
    if schema is not None and schema.is_tensor_spec():
        if "inhomogeneous" in message:
            return PayloadError(
                "The nested lists have different lengths (a ragged array), so they are not a "
                f"tensor: every row must have the same length. ({message})"
            )
        dtypes = ", ".join(
            f"{spec.name + ' ' if spec.name else ''}{spec.type}" for spec in schema.inputs
        )
        return PayloadError(
            f"The {payload_format.label} body does not fit the model's tensor input "
            f"({dtypes}): {message}"
        )
    return PayloadError(f"The {payload_format.label} body could not be read: {message}")


def bad_value_message(column: Any, expected: str, row: int, value: Any) -> str:
    """What to tell a user about the value that does not fit its column; `row` counts from 0."""
    where = f"row {row + 1} ({ROWS_COUNTED})"
    if _is_missing_or_infinite(value):
        return (
            f"Column '{column}' holds {expected} values, so it cannot be empty (null, NaN) or "
            f"infinite, but {where} is. Fill in that value, or drop the row."
        )
    return (
        f"Column '{column}' expects {expected}; {where} has {_value_text(value)}. Fix that "
        "value, or check the column against the model's signature."
    )


def first_failing_row(count: int, fails: Callable[[int, int], bool]) -> int | None:
    """The first row `i` (from 0) such that `fails(0, i + 1)`: the first value a conversion
    refuses, where `fails(start, stop)` says whether converting rows start..stop-1 fails.

    The conversion itself is the library's (MLflow's cast, pandas' CSV reader), so the row is the
    one it refused; chunks, then halves, keep this cheap on a 100,000-row payload. None when no
    row fails, or when converting no rows at all fails already (the type is the problem, not a
    value).
    """
    if fails(0, 0):
        return None
    for start in range(0, count, _SEARCH_CHUNK_ROWS):
        stop = min(start + _SEARCH_CHUNK_ROWS, count)
        if not fails(start, stop):
            continue
        low, high = start, stop  # rows start..low-1 convert; start..high-1 do not
        while high - low > 1:
            middle = (low + high) // 2
            if fails(start, middle):
                high = middle
            else:
                low = middle
        return low
    return None


def first_failed_cast(frame: Any, column: Any, schema: Schema | None) -> tuple[int, Any] | None:
    """The row (from 0) and value of `frame[column]` that MLflow's cast to the schema's type for
    that column (`cast_df_types_according_to_schema`, what its server applies) refuses."""
    if not isinstance(frame, pd.DataFrame) or column not in frame.columns:
        return None
    if schema is None or not schema.has_input_names():
        return None
    spec = schema.input_dict().get(str(column))
    if spec is None:
        return None
    series, one_column = frame[column], Schema([spec])

    def fails(start: int, stop: int) -> bool:
        try:
            cast_df_types_according_to_schema(series.iloc[start:stop].to_frame(), one_column)
        except MlflowException:
            return True
        return False

    row = first_failing_row(len(series), fails)
    return None if row is None else (row, _python_value(series.iloc[row]))


def _call_or_none(uncast: Callable[[], Any] | None) -> Any:
    if uncast is None:
        return None
    try:
        return uncast()
    except (MlflowException, TypeError, ValueError):
        return None


def _first_failed_csv_value(text: str, schema: Schema) -> tuple[str, int, Any] | None:
    """The column, row (from 0) and text of the first CSV value that pandas' reader cannot read
    as the signature's type: the reader MLflow's CSV parser uses, one column at a time, since
    pandas' message names neither the row nor (for some errors) the column."""
    try:
        header = set(pd.read_csv(io.StringIO(text), nrows=0).columns)
    except (ValueError, pd.errors.ParserError):
        return None
    for spec in schema.inputs:
        if spec.name not in header or not isinstance(spec.type, DataType):
            continue
        if spec.type in (DataType.string, DataType.binary):
            continue
        try:
            texts = pd.read_csv(io.StringIO(text), usecols=[spec.name], dtype=str)[spec.name]
        except (ValueError, pd.errors.ParserError):
            continue
        fails = functools.partial(_csv_read_fails, texts, spec.type.to_pandas())
        row = first_failing_row(len(texts), fails)
        if row is not None:
            return spec.name, row, _csv_value(texts.iloc[row])
    return None


def _csv_read_fails(texts: pd.Series, dtype: Any, start: int, stop: int) -> bool:
    """Whether pandas' CSV reader refuses rows start..stop-1 of one column as `dtype`."""
    chunk = texts.iloc[start:stop].to_csv(index=False)
    try:
        pd.read_csv(io.StringIO(chunk), dtype={texts.name: dtype})
    except (ValueError, TypeError):
        return True
    return False


def _inner_error(error: str) -> str:
    """`ValueError("could not convert string to float: 'x'")` -> `could not convert ...`."""
    match = re.fullmatch(r"\w+\((['\"])(.*)\1\)", error.strip(), re.S)
    return match.group(2) if match else error


def _expected_type(schema: Schema | None, column: Any) -> str | None:
    if schema is None or not schema.has_input_names():
        return None
    spec = schema.input_dict().get(str(column))
    if spec is None:
        return None
    return spec.type.name if isinstance(spec.type, DataType) else str(spec.type)


def _is_column_schema(schema: Schema) -> bool:
    return schema.has_input_names() and not schema.is_tensor_spec()


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _is_missing_or_infinite(value: Any) -> bool:
    return _is_missing(value) or (isinstance(value, float) and math.isinf(value))


def _python_value(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _csv_value(text: Any) -> Any:
    """A CSV field as the user wrote it: a number when it reads as one (so that 'inf' counts as
    infinite and '1.5' shows as 1.5), else its text; NaN when pandas reads it as missing."""
    if not isinstance(text, str):
        return text
    try:
        return float(text)
    except ValueError:
        return text


def _value_text(value: Any, limit: int = 60) -> str:
    text = repr(_python_value(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _quoted(names: list[Any]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _size_text(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size:,} bytes"
    return f"{size / (1024 * 1024):.1f} MB ({size:,} bytes)"
