"""The worker's replies, encoded so that the app can read them without running code the worker
chooses: a JSON document plus raw buffers, never a pickle.

Model code runs in the worker and can take it over, so a reply is untrusted input to the app,
which holds the registry credentials. `pickle.loads` on it would let a model run code in the
app. The Python docs' alternative, an `Unpickler` whose `find_class` allows a list of globals,
was considered and not chosen: the replies carry numpy arrays and pandas frames, whose
reconstructors would have to be allowed, and pickle's BUILD opcode then calls `__setstate__`
on whatever they return with state the worker chooses (pandas sets arbitrary attributes from
it), so safety would rest on numpy and pandas internals. Here the app runs only `json.loads`,
`np.frombuffer` on checked sizes and public pandas constructors, on checked arguments.

A value is a JSON tree: JSON's own scalars (None, bool, int, float including NaN and
infinities, str) and lists as themselves, everything else as a tagged object {"$": tag, ...}:
tuples, dicts (any keys), sets, bytes, complex numbers, paths, numpy arrays and scalars (dtype
as numpy's own `dtype.str`, data as a buffer; object arrays as a list of values, or, when they
hold only text, as Arrow's string layout: UTF-8 bytes and int32 offsets), pandas
DataFrames, Series, Index, RangeIndex, MultiIndex and extension arrays (strings, categoricals,
nullable numbers), and the dataclasses in `RESULT_TYPES`, rebuilt through their constructor.
Anything else cannot be sent back: the worker says so instead of sending it.

A reply: {"kind": "ok", "value": tree, "timings": [...]}, or {"kind": "error", "type": name,
"message": text, "timings": [...]}, or {"kind": "out of memory", "timings": [...]}.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import math
import pathlib
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from deploystudio import errors

try:  # a model's own environment may lack pyarrow: text then travels as JSON items
    import pyarrow as pa
except ImportError:  # pragma: no cover - the app always has it
    pa = None

# pandas before 2.1 calls its numpy-backed extension array PandasArray (the worker may run
# in a model's own environment with pandas 1.x).
_NUMPY_EXTENSION_ARRAY = (
    getattr(pd.arrays, "NumpyExtensionArray", None) or pd.arrays.PandasArray
)

OK, ERROR, OUT_OF_MEMORY = "ok", "error", "out of memory"
# The dataclasses a worker call may return, by module and name. A caller of
# `PredictionWorker.call` whose function returns a new one adds it here.
RESULT_TYPES = frozenset(
    {
        "deploystudio.prediction.RawPrediction",
        "deploystudio.customization.wrapping.WrapPreview",
    }
)
MAX_DEPTH = 64
MAX_DIMENSIONS = 32
# numpy's own dtype notation: byte order, kind, item size, unit (e.g. '<f8', '|b1', '<M8[ns]').
_DTYPE = re.compile(r"[<>|=][biufcmMSUV]\d{1,9}(\[\w+\])?")
_TAG = "$"
# Extension dtypes a column may have, by name: strings, nullable numbers and booleans, whose
# values travel as objects. (Others, such as time zones, would make pandas look names up.)
_EXTENSION_DTYPE = re.compile(
    r"str|string(\[(python|pyarrow)\])?|U?Int(8|16|32|64)|Float(32|64)|boolean"
)
# Values an object array may hold as they are, without a tag.
_PLAIN = frozenset({str, int, float, bool, type(None)})
# Text arrays from this many items travel as two buffers instead of JSON items: class labels of
# 100,000 rows took 37 ms to encode and decode as items, 18 ms as buffers (measured in-process).
# Smaller ones stay JSON, where the buffers' fixed cost would not pay.
STRINGS_MIN_ITEMS = 256


class UnsupportedResultError(TypeError):
    """A value of a type replies do not carry (raised in the worker, which says so instead)."""


class MalformedReplyError(ValueError):
    """A reply that breaks this format (raised in the app)."""


@dataclass(frozen=True)
class Reply:
    kind: str
    value: Any = None
    error_type: type[errors.DeployStudioError] = errors.PredictionError
    message: str = ""
    timings: tuple[float, float] = (0.0, 0.0)


# ------------------------------------------------------------------------------ encoding


def encode_ok(value: Any, timings: tuple[float, float]) -> tuple[bytes, list[memoryview]]:
    """The reply for `value`: its JSON body and buffers. Raises UnsupportedResultError for a
    value (or a part of it) that replies do not carry."""
    buffers: list[memoryview] = []
    tree = _Encoder(buffers).encode(value, 0)
    return _dumps({"kind": OK, "value": tree, "timings": list(timings)}), buffers


def encode_error(
    exc: BaseException, timings: tuple[float, float], message: str | None = None
) -> tuple[bytes, list[memoryview]]:
    """The reply for an exception: a DeployStudioError by the name of its class (or nearest
    base) in deploystudio.errors, anything else as a PredictionError naming its type."""
    if isinstance(exc, errors.DeployStudioError):
        name = next(
            cls.__name__ for cls in type(exc).__mro__ if getattr(errors, cls.__name__, None) is cls
        )
        text = str(exc)
    else:
        name, text = errors.PredictionError.__name__, f"{type(exc).__name__}: {exc}"
    body = {"kind": ERROR, "type": name, "message": message or text, "timings": list(timings)}
    return _dumps(body), []


def encode_out_of_memory(timings: tuple[float, float]) -> tuple[bytes, list[memoryview]]:
    return _dumps({"kind": OUT_OF_MEMORY, "timings": list(timings)}), []


def _dumps(document: dict) -> bytes:
    # ASCII output: strings with lone surrogates survive, and the bytes are always valid UTF-8.
    return json.dumps(document, separators=(",", ":")).encode("ascii")


class _Encoder:
    def __init__(self, buffers: list[memoryview]) -> None:
        self.buffers = buffers

    def buffer(self, data: Any) -> int:
        self.buffers.append(memoryview(data).cast("B"))
        return len(self.buffers) - 1

    def encode(self, value: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise UnsupportedResultError(f"it nests deeper than {MAX_DEPTH} levels")
        kind = type(value)
        if value is None or kind in (bool, int, float, str):
            return value
        deeper = depth + 1
        if kind is list:
            return [self.encode(item, deeper) for item in value]
        if kind is tuple:
            return {_TAG: "tuple", "items": [self.encode(item, deeper) for item in value]}
        if kind is dict:
            items = [[self.encode(k, deeper), self.encode(v, deeper)] for k, v in value.items()]
            return {_TAG: "dict", "items": items}
        if kind in (set, frozenset):
            return {_TAG: kind.__name__, "items": [self.encode(item, deeper) for item in value]}
        if kind in (bytes, bytearray):
            return {_TAG: kind.__name__, "buffer": self.buffer(value)}
        if kind is complex:
            return {_TAG: "complex", "real": value.real, "imag": value.imag}
        if kind in (pathlib.PosixPath, pathlib.PurePosixPath):
            return {_TAG: "path", "pure": kind is pathlib.PurePosixPath, "path": str(value)}
        if isinstance(value, np.ndarray):
            return self.array(value, deeper)
        if isinstance(value, np.generic):
            return {_TAG: "scalar", "array": self.array(np.asarray(value), deeper)}
        if isinstance(value, pd.DataFrame):
            return self.frame(value, deeper)
        if isinstance(value, pd.Series):
            return {
                _TAG: "series",
                "values": self.column(value.array, deeper),
                "index": self.index(value.index, deeper),
                "name": self.encode(value.name, deeper),
            }
        if isinstance(value, pd.Index):
            return self.index(value, deeper)
        if value is pd.NA:
            return {_TAG: "NA"}
        if f"{kind.__module__}.{kind.__qualname__}" in RESULT_TYPES:
            fields = {
                f.name: self.encode(getattr(value, f.name), deeper)
                for f in dataclasses.fields(value)
                if f.init
            }
            return {
                _TAG: "result",
                "type": f"{kind.__module__}.{kind.__qualname__}",
                "fields": fields,
            }
        raise UnsupportedResultError(f"it holds a {kind.__module__}.{kind.__qualname__}")

    def array(self, array: np.ndarray, depth: int) -> dict:
        dtype = array.dtype
        if dtype.hasobject:
            if array.size >= STRINGS_MIN_ITEMS and _only_text(array):
                strings = self.strings(array)
                if strings is not None:
                    return strings
            items = array.ravel().tolist()
            if not set(map(type, items)) <= _PLAIN:  # text and numbers need no tags
                items = [self.encode(item, depth) for item in items]
            return {_TAG: "objects", "shape": list(array.shape), "items": items}
        if (
            dtype.fields is not None
            or dtype.subdtype is not None
            or not _DTYPE.fullmatch(dtype.str)
        ):
            raise UnsupportedResultError(f"it holds an array of {dtype}")
        data = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        return {
            _TAG: "array",
            "dtype": dtype.str,
            "shape": list(array.shape),
            "buffer": self.buffer(data),
        }

    def strings(self, array: np.ndarray) -> dict | None:
        """Text as Arrow lays it out (offsets and UTF-8 bytes); None when some item is not
        valid Unicode (a lone surrogate), which JSON's escapes carry instead."""
        if pa is None:
            return None
        try:
            text = pa.array(array.ravel(), type=pa.string())
        except (pa.ArrowException, UnicodeEncodeError):
            return None
        _, offsets, data = text.buffers()
        ends = np.frombuffer(offsets, dtype=np.int32, count=array.size + 1)
        size = int(ends[-1])
        return {
            _TAG: "strings",
            "shape": list(array.shape),
            "offsets": self.buffer(ends),
            "data": self.buffer(memoryview(data)[:size] if data is not None else b""),
        }

    def column(self, values: Any, depth: int) -> dict:
        """A Series' or Index's values: a numpy array, or an extension array by its dtype."""
        if isinstance(values, np.ndarray):
            return self.array(values, depth)
        if isinstance(values, _NUMPY_EXTENSION_ARRAY) or isinstance(
            values.dtype,
            np.dtype,  # numpy values in a pandas array: dates, durations
        ):
            return self.array(values.to_numpy(), depth)
        if isinstance(values, pd.Categorical):
            return {
                _TAG: "categorical",
                "codes": self.array(values.codes, depth),
                "categories": self.index(values.categories, depth),
                "ordered": bool(values.ordered),
            }
        # Strings, nullable numbers and booleans: their values as objects (NA as NA), remade
        # with the dtype's name.
        if not _EXTENSION_DTYPE.fullmatch(str(values.dtype)):
            raise UnsupportedResultError(f"it holds a column of dtype {values.dtype}")
        objects = values.to_numpy(dtype=object)
        return {_TAG: "extension", "dtype": str(values.dtype), "values": self.array(objects, depth)}

    def index(self, index: pd.Index, depth: int) -> dict:
        names = [self.encode(name, depth) for name in index.names]
        if isinstance(index, pd.RangeIndex):
            return {
                _TAG: "range",
                "start": index.start,
                "stop": index.stop,
                "step": index.step,
                "names": names,
            }
        if isinstance(index, pd.MultiIndex):
            levels = [
                self.column(index.get_level_values(i).array, depth) for i in range(index.nlevels)
            ]
            return {_TAG: "multiindex", "levels": levels, "names": names}
        return {_TAG: "index", "values": self.column(index.array, depth), "names": names}

    def frame(self, frame: pd.DataFrame, depth: int) -> dict:
        return {
            _TAG: "frame",
            "columns": self.index(frame.columns, depth),
            "index": self.index(frame.index, depth),
            "values": [self.column(frame.iloc[:, i].array, depth) for i in range(frame.shape[1])],
        }


# ------------------------------------------------------------------------------ decoding


def _only_text(array: np.ndarray) -> bool:
    # pandas' type inference runs in C: no Python list of 100,000 items to look at.
    return pd.api.types.infer_dtype(array.ravel(), skipna=False) == "string"


def decode_reply(body: bytes | memoryview, buffers: list[Any]) -> Reply:
    """The reply in `body` and `buffers`, or MalformedReplyError. Runs no code the reply names:
    only the constructors of the types listed in the module docstring."""
    try:
        document = json.loads(bytes(body))
        if not isinstance(document, dict):
            raise MalformedReplyError("the reply is not a JSON object")
        timings = document.get("timings")
        if (
            not isinstance(timings, list)
            or len(timings) != 2
            or not all(type(t) in (int, float) and 0 <= t < math.inf for t in timings)
        ):
            raise MalformedReplyError("the reply's timings are not two durations")
        timings = (float(timings[0]), float(timings[1]))
        kind = document.get("kind")
        if kind == OK and "value" in document:
            return Reply(OK, _Decoder(buffers).decode(document["value"], 0), timings=timings)
        if kind == ERROR:
            name, message = document.get("type"), document.get("message")
            if not isinstance(name, str) or not isinstance(message, str):
                raise MalformedReplyError("the error reply lacks its type or message")
            return Reply(ERROR, error_type=error_class(name), message=message, timings=timings)
        if kind == OUT_OF_MEMORY:
            return Reply(OUT_OF_MEMORY, timings=timings)
        raise MalformedReplyError(f"a reply of kind {kind!r}")
    except MalformedReplyError:
        raise
    except Exception as exc:
        # JSON that does not parse, or a tree whose parts do not fit together (the constructors
        # raise whatever they raise on arguments that do not fit).
        raise MalformedReplyError(f"{type(exc).__name__}: {exc}") from exc


def error_class(name: str) -> type[errors.DeployStudioError]:
    """The DeployStudioError subclass of that name in deploystudio.errors, else PredictionError."""
    found = getattr(errors, name, None) if name.isidentifier() else None
    if isinstance(found, type) and issubclass(found, errors.DeployStudioError):
        return found
    return errors.PredictionError


@functools.cache
def _result_type(name: str) -> tuple[type, frozenset[str]]:
    """A listed result type (imported by its listed name only) and its constructor's fields."""
    if name not in RESULT_TYPES:
        raise MalformedReplyError(f"a result of type {name!r}, which replies do not carry")
    module, _, qualname = name.rpartition(".")
    cls = getattr(importlib.import_module(module), qualname)
    return cls, frozenset(f.name for f in dataclasses.fields(cls) if f.init)


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise MalformedReplyError(what)


def _shape(value: Any) -> tuple[int, ...]:
    _expect(
        isinstance(value, list)
        and len(value) <= MAX_DIMENSIONS
        and all(type(n) is int and n >= 0 for n in value),
        f"an array shape {value!r}",
    )
    return tuple(value)


class _Decoder:
    def __init__(self, buffers: list[Any]) -> None:
        self.buffers = buffers

    def buffer(self, index: Any) -> memoryview:
        _expect(type(index) is int and 0 <= index < len(self.buffers), f"buffer {index!r}")
        return memoryview(self.buffers[index]).cast("B")

    def decode(self, node: Any, depth: int) -> Any:
        _expect(depth <= MAX_DEPTH, f"a value nested deeper than {MAX_DEPTH} levels")
        if node is None or type(node) in (bool, int, float, str):
            return node
        deeper = depth + 1
        if type(node) is list:
            return [self.decode(item, deeper) for item in node]
        _expect(type(node) is dict and type(node.get(_TAG)) is str, "an untagged object")
        tag = node[_TAG]
        if tag == "tuple":
            return tuple(self.items(node, deeper))
        if tag == "dict":
            pairs = node["items"]
            _expect(
                type(pairs) is list and all(type(p) is list and len(p) == 2 for p in pairs),
                "a dict's items",
            )
            return {self.decode(k, deeper): self.decode(v, deeper) for k, v in pairs}
        if tag == "set":
            return set(self.items(node, deeper))
        if tag == "frozenset":
            return frozenset(self.items(node, deeper))
        if tag == "bytes":
            return self.buffer(node["buffer"]).tobytes()
        if tag == "bytearray":
            return bytearray(self.buffer(node["buffer"]))
        if tag == "complex":
            _expect(type(node["real"]) is float and type(node["imag"]) is float, "a complex")
            return complex(node["real"], node["imag"])
        if tag == "path":
            _expect(type(node["path"]) is str, "a path")
            return (pathlib.PurePosixPath if node["pure"] is True else pathlib.Path)(node["path"])
        if tag == "NA":
            return pd.NA
        if tag in ("array", "objects", "strings"):
            return self.array(node, deeper)
        if tag == "scalar":
            array = self.array(node["array"], deeper)
            _expect(array.ndim == 0, "a scalar that is not one value")
            return array[()]
        if tag == "series":
            index = self.index(node["index"], deeper)
            values = self.column(node["values"], deeper, len(index))
            return pd.Series(
                values, index=index, name=self.decode(node["name"], deeper), copy=False
            )
        if tag == "frame":
            return self.frame(node, deeper)
        if tag in ("index", "range", "multiindex"):
            return self.index(node, deeper)
        if tag == "result":
            _expect(type(node["type"]) is str, "a result type")
            (cls, names), fields = _result_type(node["type"]), node["fields"]
            _expect(type(fields) is dict and set(fields) == names, f"a {cls.__name__}'s fields")
            return cls(**{name: self.decode(fields[name], deeper) for name in names})
        raise MalformedReplyError(f"an object tagged {tag!r}")

    def items(self, node: dict, depth: int) -> list[Any]:
        items = node["items"]
        _expect(type(items) is list, "a collection's items")
        return [self.decode(item, depth) for item in items]

    def array(self, node: Any, depth: int) -> np.ndarray:
        _expect(type(node) is dict, "an array")
        shape = _shape(node["shape"])
        count = math.prod(shape)
        if node[_TAG] == "objects":
            items = node["items"]
            _expect(type(items) is list and len(items) == count, "an object array's items")
            if not set(map(type, items)) <= _PLAIN:
                items = [self.decode(item, depth) for item in items]
            # fromiter, not np.array: items that are lists stay items, not a new dimension.
            return np.fromiter(items, dtype=object, count=count).reshape(shape)
        if node[_TAG] == "strings":
            return self.strings(node, count).reshape(shape)
        _expect(node[_TAG] == "array" and type(node["dtype"]) is str, "an array")
        _expect(bool(_DTYPE.fullmatch(node["dtype"])), f"an array of dtype {node['dtype']!r}")
        dtype = np.dtype(node["dtype"])
        _expect(not dtype.hasobject and dtype.fields is None, f"an array of {dtype}")
        data = self.buffer(node["buffer"])
        _expect(data.nbytes == count * dtype.itemsize, "an array whose data does not fit its shape")
        if not dtype.itemsize:
            return np.empty(shape, dtype)
        array = np.frombuffer(data, dtype=dtype).reshape(shape)
        # The buffers are the app's own copies; an inline one may still be read-only.
        return array if array.flags.writeable else array.copy()

    def strings(self, node: dict, count: int) -> np.ndarray:
        """Arrow's string layout, checked before Arrow reads it: offsets that start at 0, never
        go back and end at the data's size; then Arrow's full validation (UTF-8)."""
        offsets, data = self.buffer(node["offsets"]), self.buffer(node["data"])
        _expect(offsets.nbytes == (count + 1) * 4, "text whose offsets do not fit its shape")
        ends = np.frombuffer(offsets, dtype=np.int32)
        _expect(
            int(ends[0]) == 0
            and int(ends[-1]) == data.nbytes
            and bool(np.all(ends[1:] >= ends[:-1])),
            "text whose offsets do not fit its data",
        )
        buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
        text = pa.Array.from_buffers(pa.string(), count, buffers)
        text.validate(full=True)
        return text.to_numpy(zero_copy_only=False)

    def column(self, node: Any, depth: int, length: int | None = None) -> Any:
        _expect(type(node) is dict, "a column")
        tag = node.get(_TAG)
        if tag == "categorical":
            codes = self.array(node["codes"], depth)
            _expect(codes.dtype.kind == "i", "a categorical's codes")
            values: Any = pd.Categorical.from_codes(
                codes,
                categories=self.index(node["categories"], depth),
                ordered=node["ordered"] is True,
            )
        elif tag == "extension":
            _expect(
                type(node["dtype"]) is str and bool(_EXTENSION_DTYPE.fullmatch(node["dtype"])),
                f"a column of dtype {node['dtype']!r}",
            )
            dtype = pd.api.types.pandas_dtype(node["dtype"])
            values = pd.array(self.array(node["values"], depth), dtype=dtype)
        else:
            values = self.array(node, depth)
            _expect(values.ndim == 1, "a column that is not one-dimensional")
        _expect(length is None or len(values) == length, "a column of the wrong length")
        return values

    def index(self, node: Any, depth: int) -> pd.Index:
        _expect(type(node) is dict and type(node.get("names")) is list, "an index")
        names = [self.decode(name, depth) for name in node["names"]]
        tag = node[_TAG]
        if tag == "range":
            bounds = [node["start"], node["stop"], node["step"]]
            _expect(all(type(b) is int for b in bounds) and bounds[2] != 0, "a range index")
            _expect(len(names) == 1, "a range index's name")
            return pd.RangeIndex(*bounds, name=names[0])
        if tag == "multiindex":
            levels = [self.column(level, depth) for level in node["levels"]]
            _expect(len(levels) == len(names) > 0, "a multi-index's levels")
            return pd.MultiIndex.from_arrays(levels, names=names)
        _expect(tag == "index" and len(names) == 1, "an index")
        return pd.Index(self.column(node["values"], depth), name=names[0], copy=False)

    def frame(self, node: dict, depth: int) -> pd.DataFrame:
        index = self.index(node["index"], depth)
        columns = self.index(node["columns"], depth)
        values = node["values"]
        _expect(type(values) is list and len(values) == len(columns), "a frame's columns")
        data = {i: self.column(v, depth, len(index)) for i, v in enumerate(values)}
        frame = pd.DataFrame(data, index=index, copy=False)
        frame.columns = columns
        return frame


def unsupported_message(exc: BaseException, value: Any) -> str:
    # A result dataclass is our own wrapper around the model's output: name the output, which is
    # what the user controls, not the wrapper.
    what = (
        "The model's output"
        if dataclasses.is_dataclass(value)
        else f"The result ({type(value).__name__})"
    )
    return (
        f"{what} cannot be sent back to the app: {exc}. Return plain data: numbers, text, "
        "lists, dicts, arrays or DataFrames."
    )
