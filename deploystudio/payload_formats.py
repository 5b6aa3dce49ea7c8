"""The request formats a model input is sent in, and writing a model input in one of them.

`PayloadFormat` lists the bodies the serving stacks accept (Azure ML's `input_data`, MLflow's
four JSON formats, CSV, Parquet, NPY and bare JSON arrays); `ModelInput` is what a model's
`predict` receives; `write_payload` turns one into a body of a chosen format through MLflow's
own writer, so a body written here parses the same on MLflow's scoring server. Parsing bodies is
payloads.py's.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import convert_input_example_to_serving_input

from deploystudio.errors import PayloadError

NPY_MAGIC = b"\x93NUMPY"
PARQUET_MAGIC = b"PAR1"
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
        return self.value if self in JSON_OBJECT_FORMATS else None

    @property
    def is_binary(self) -> bool:
        return self in (PayloadFormat.PARQUET, PayloadFormat.NPY)

    @property
    def carries_params(self) -> bool:
        """Files and bare arrays have no place for `params`: writing them drops the params."""
        return self in JSON_OBJECT_FORMATS

    @property
    def file_extension(self) -> str:
        return _EXTENSIONS[self]

    @property
    def media_type(self) -> str:
        return _MEDIA_TYPES[self]


JSON_OBJECT_FORMATS = (
    PayloadFormat.AZURE_INPUT_DATA,
    PayloadFormat.DATAFRAME_SPLIT,
    PayloadFormat.DATAFRAME_RECORDS,
    PayloadFormat.INSTANCES,
    PayloadFormat.INPUTS,
)
FORMAT_BY_KEY = {f.value: f for f in JSON_OBJECT_FORMATS}
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
    **{f: ".json" for f in JSON_OBJECT_FORMATS},
    PayloadFormat.CSV: ".csv",
    PayloadFormat.PARQUET: ".parquet",
    PayloadFormat.NPY: ".npy",
    PayloadFormat.JSON_ARRAY: ".json",
}
_MEDIA_TYPES = {
    **{f: "application/json" for f in JSON_OBJECT_FORMATS},
    PayloadFormat.CSV: "text/csv",
    PayloadFormat.PARQUET: "application/vnd.apache.parquet",
    PayloadFormat.NPY: "application/octet-stream",
    PayloadFormat.JSON_ARRAY: "application/json",
}
# Only extensions that name one format; `.json` could be any JSON format, so its content decides.
FORMAT_BY_EXTENSION = {
    ".csv": PayloadFormat.CSV,
    ".parquet": PayloadFormat.PARQUET,
    ".pq": PayloadFormat.PARQUET,
    ".npy": PayloadFormat.NPY,
}
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


def looks_split(value: dict) -> bool:
    return {"columns", "data"} <= value.keys() <= _SPLIT_KEYS


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
        if not looks_split(data):  # Azure would read {"columns", "data"} tensors as a table
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
