"""Request bodies -> model input, built on MLflow's own parsing.

The formats and writing a model input in one are payload_formats.py's; the checks after parsing
and the coercion warnings, payload_checks.py's; finding and wording a value that fails,
payload_messages.py's.

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

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.models.signature import ModelSignature
from mlflow.pyfunc.scoring_server import (
    infer_and_parse_data,
    parse_csv_input,
    parse_parquet_input,
)
from mlflow.types import Schema
from mlflow.types.schema import DataType, ParamSchema, ParamSpec
from mlflow.utils.proto_json_utils import cast_df_types_according_to_schema, convert_data_type

from deploystudio.errors import PayloadError
from deploystudio.payload_checks import (
    checked_data,
    coercion_warnings,
    is_column_schema,
    may_coerce,
)
from deploystudio.payload_formats import (
    FORMAT_BY_EXTENSION,
    FORMAT_BY_KEY,
    NPY_MAGIC,
    PARAMS_KEY,
    PARQUET_MAGIC,
    ModelData,
    ModelInput,
    PayloadFormat,
    looks_split,
    write_payload,
)
from deploystudio.payload_messages import (
    ROWS_COUNTED,
    TOO_DEEP,
    bad_value_message,
    expected_type,
    first_failed_cast,
    first_failed_csv_value,
    json_type,
    quoted,
    readable_error,
    size_text,
    value_text,
)

# ROWS_COUNTED, bad_value_message, first_failed_cast and write_payload are still imported from
# here by prediction.py, worker/process.py and customization/scoring_script.py, which other
# changes are editing now: they import from payload_formats.py and payload_messages.py once
# those land, and the four go from this list (issue 15).
__all__ = [
    "DEFAULT_MAX_BYTES",
    "ROWS_COUNTED",
    "ModelInput",
    "PayloadFormat",
    "bad_value_message",
    "check_params",
    "detect_format",
    "example_request",
    "first_failed_cast",
    "parse_payload",
    "write_payload",
]

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
_ACCEPTED_KEYS_TEXT = (
    "exactly one of " + ", ".join(FORMAT_BY_KEY) + f", plus an optional '{PARAMS_KEY}' object"
)


def detect_format(body: bytes | str, filename: str | None = None) -> PayloadFormat:
    """The format of `body`: by the file extension first, then by content (NPY and Parquet magic
    bytes, a JSON array, the top-level key of a JSON object, else CSV)."""
    return _sniff(body, filename)[0]


def _sniff(body: bytes | str, filename: str | None) -> tuple[PayloadFormat, Any]:
    """The format, and the parsed JSON when detecting meant parsing it (so it is parsed once)."""
    if filename:
        suffix = Path(filename).suffix.lower()
        if suffix in FORMAT_BY_EXTENSION:
            return FORMAT_BY_EXTENSION[suffix], None
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
    if looks_split(body):
        # A bare table in split orientation: how MLflow 1.x saved input_example.json.
        return PayloadFormat.DATAFRAME_SPLIT
    unknown = [k for k in body if k not in FORMAT_BY_KEY and k != PARAMS_KEY]
    if unknown:
        raise PayloadError(
            f"Unknown top-level key {quoted(unknown)}. Accepted keys: {_ACCEPTED_KEYS_TEXT}."
        )
    present = [k for k in body if k in FORMAT_BY_KEY]
    if not present:
        raise PayloadError(f"The body has no input key. Add {_ACCEPTED_KEYS_TEXT}.")
    if len(present) > 1:
        raise PayloadError(
            f"The body has {len(present)} input keys at once ({quoted(present)}); keep exactly "
            "one of them."
        )
    return FORMAT_BY_KEY[present[0]]


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
            f"The payload is {size_text(size)}, over the limit of {size_text(max_bytes)}. "
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
                f"{json_type(parsed)}."
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
                f"{json_type(params)}."
            )
        value = parsed if looks_split(parsed) else parsed[payload_format.value]
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
            f"The model's signature declares no params, so MLflow ignores {quoted(names)}: "
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
                f"{value_text(value)}{'' if spec.shape else _kind_note(value)}."
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
    return f"{spec.name} ({_param_type_text(spec)}, default {value_text(spec.default)})"


def _kind_note(value: Any) -> str:
    if isinstance(value, list | dict):
        return f" ({json_type(value)})"
    return ""


def _mlflow_body(payload_format: PayloadFormat, value: Any) -> dict[str, Any]:
    """The MLflow scoring body equivalent to one input value."""
    if payload_format is not PayloadFormat.AZURE_INPUT_DATA:
        return {payload_format.value: value}
    # Azure ML's `input_data` carries the same three shapes MLflow reads, under one key: a table in
    # pandas' split orientation is MLflow's `dataframe_split`; a list (one tensor) or an object of
    # named lists (named tensors) is MLflow's `inputs`. Only this wrapper is Azure's own.
    if isinstance(value, dict) and looks_split(value):
        return {"dataframe_split": value}
    if isinstance(value, list | dict):
        return {"inputs": value}
    raise PayloadError(
        '\'input_data\' must be a table {"columns": [...], "data": [[...]]}, a list (one '
        "tensor) or an object of named lists (named tensors), but it is "
        f"{json_type(value)}."
    )


def _parse_with_mlflow(
    mlflow_body: dict[str, Any], schema: Schema | None, payload_format: PayloadFormat
) -> tuple[ModelData, list[str]]:
    try:
        data = infer_and_parse_data(mlflow_body, schema)
        # The uncast parse, to see what the cast changed; only worth it if a cast can lose values.
        raw = infer_and_parse_data(mlflow_body, None) if may_coerce(schema) else None
    except MlflowException as exc:
        uncast = lambda: infer_and_parse_data(mlflow_body, None)  # noqa: E731
        raise readable_error(exc, payload_format, schema, uncast) from exc
    except (ValueError, TypeError) as exc:
        raise PayloadError(f"The {payload_format.label} body could not be read: {exc}") from exc
    data = _as_model_data(data, payload_format)
    warnings = coercion_warnings(raw, data, schema) if raw is not None else []
    data = checked_data(data, schema, warnings)
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
        f"The {payload_format.label} body holds {json_type(data)} of objects, not a tensor. "
        "Send rows of a table as 'dataframe_records', or named tensors as an object of lists."
    )


def _parse_csv(body: bytes | str, schema: Schema | None) -> ModelInput:
    text = _decode(body, "The CSV file")
    # The server's reader takes the column dtypes from a named column schema; tensors have none.
    columns = schema if schema is not None and is_column_schema(schema) else None
    try:
        frame = parse_csv_input(io.StringIO(text), columns)
    except MlflowException as exc:
        raise _csv_error(exc, text, columns) from exc
    warnings: list[str] = []
    frame = checked_data(frame, schema, warnings)
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
        found = first_failed_csv_value(text, schema)
        if found is not None:
            name, row, value = found
            return PayloadError(bad_value_message(name, expected_type(schema, name), row, value))
        column = re.search(r"in column (\d+)", detail)
        if column:
            header = pd.read_csv(io.StringIO(text), nrows=0).columns
            index = int(column.group(1))
            if index < len(header):
                name = header[index]
                return PayloadError(
                    f"Column '{name}' of the CSV cannot be read as "
                    f"{expected_type(schema, name)}: {detail}. Fix its values, or check the "
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
            raise readable_error(exc, PayloadFormat.PARQUET, schema, lambda: raw) from exc
        warnings = coercion_warnings(raw, frame, schema)
    return ModelInput(data=checked_data(frame, schema, warnings), warnings=warnings)


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
            raise readable_error(exc, PayloadFormat.NPY, schema) from exc
        warnings = coercion_warnings(raw, array, schema)
    return ModelInput(data=checked_data(array, schema, warnings), warnings=warnings)


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
        f"The body is {json_type(parsed)}, but it must be a JSON object such as "
        '{"dataframe_split": {"columns": [...], "data": [[...]]}} (or a JSON array for a tensor).'
    )


def example_request(model_path: Path) -> dict:
    """The model's input example as an Azure ML request body: {"input_data": ..., "params"}.

    Reads the MLmodel file and the example only (never the model's pickles): what the Customize
    page validates a script with, and what the Azure export writes as request.json."""
    try:
        model = Model.load(str(model_path))
    except (MlflowException, OSError) as exc:
        raise PayloadError(f"'{model_path}' is not an MLflow model folder: {exc}") from exc
    if not model.saved_input_example_info:
        raise PayloadError(
            "The model has no input example, so there is no request to send: write one, e.g. "
            '{"input_data": {"columns": ["a", "b"], "data": [[1, 2]]}}.'
        )
    try:
        data = model.load_input_example(str(model_path))
        params = model.load_input_example_params(str(model_path))
    except (MlflowException, ValueError, OSError) as exc:
        raise PayloadError(f"The model's input example cannot be read: {exc}") from exc
    body = write_payload(ModelInput(data=data, params=params), PayloadFormat.AZURE_INPUT_DATA)
    return json.loads(body)
