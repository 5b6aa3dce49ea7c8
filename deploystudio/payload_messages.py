"""Messages about request values: where a value fails and how to say so.

MLflow's parsers and casts fail on a whole column or body without saying which value; the
functions here find the first failing row (in chunks, so a large body is not converted row by
row) and word the PayloadError with the column, the row as a user counts it, the value and the
type expected.
"""

from __future__ import annotations

import functools
import io
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.pyfunc.scoring_server import (
    SCORING_PROTOCOL_CHANGE_INFO,
)
from mlflow.types import Schema
from mlflow.types.schema import DataType
from mlflow.utils.proto_json_utils import cast_df_types_according_to_schema

from deploystudio.errors import PayloadError
from deploystudio.payload_formats import PayloadFormat

TOO_DEEP = (
    "The body is nested too deeply to read (over 1,000 levels of brackets). Send the data as "
    "rows of values, such as [[1.0, 2.0], [3.0, 4.0]]."
)
# How rows are numbered in messages: as a user counts them in a table or a CSV file.
ROWS_COUNTED = "data rows counted from 1"
# Rows converted at once while looking for the value a conversion refuses.
_SEARCH_CHUNK_ROWS = 4096


def readable_error(
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
        expected = expected_type(schema, column) or pandas_type
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
        f"Column '{column}' expects {expected}; {where} has {value_text(value)}. Fix that "
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


def first_failed_csv_value(text: str, schema: Schema) -> tuple[str, int, Any] | None:
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


def expected_type(schema: Schema | None, column: Any) -> str | None:
    if schema is None or not schema.has_input_names():
        return None
    spec = schema.input_dict().get(str(column))
    if spec is None:
        return None
    return spec.type.name if isinstance(spec.type, DataType) else str(spec.type)


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _is_missing_or_infinite(value: Any) -> bool:
    return is_missing(value) or (isinstance(value, float) and math.isinf(value))


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


def value_text(value: Any, limit: int = 60) -> str:
    text = repr(_python_value(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def json_type(value: Any) -> str:
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


def quoted(names: list[Any]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def size_text(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size:,} bytes"
    return f"{size / (1024 * 1024):.1f} MB ({size:,} bytes)"
