"""The worker's channel and replies: what a taken-over worker can send is refused, not run.

Model code runs in the worker and can write anything to its socket and memory file. These tests
send such replies: hand-made on a socketpair, and end to end from a model's predict in a real
worker."""

from __future__ import annotations

import json
import os
import pickle
import socket
import struct
import textwrap
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from deploystudio.errors import (
    InvalidModelUriError,
    PredictionError,
    PredictionWorkerError,
    WrapError,
)
from deploystudio.payload_formats import ModelInput
from deploystudio.prediction import RawPrediction
from deploystudio.worker import replies as worker_replies
from deploystudio.worker.channel import Channel, MalformedMessageError, new_memory_file
from deploystudio.worker.process import PredictionWorker
from deploystudio.worker.replies import MalformedReplyError, UnsupportedResultError


class _Marker:
    """Unpickling this creates `path`: the simplest stand-in for code a model wants run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.fixture
def pair():
    """Two channels over a socketpair, each with the memory file the other writes."""
    left, right = socket.socketpair()
    forth, back = new_memory_file("test-forth"), new_memory_file("test-back")
    sender = Channel(left, outgoing_fd=forth, incoming_fd=os.dup(back))
    receiver = Channel(right, outgoing_fd=back, incoming_fd=os.dup(forth))
    yield sender, receiver
    sender.close()
    receiver.close()


def raw_frame(body: bytes, spans: list[tuple[int, int, int]], inline: bytes = b"") -> bytes:
    """A frame as the protocol lays it out, for spans no honest sender would write."""
    head = struct.pack("!IQ", len(spans), len(body))
    packed = b"".join(struct.pack("!BQQ", *span) for span in spans)
    frame = head + packed + body + inline
    return struct.pack("!Q", len(frame)) + frame


def round_trip(pair, value):
    sender, receiver = pair
    sender.send_frame(*worker_replies.encode_ok(value, (0.1, 0.2)))
    reply = worker_replies.decode_reply(*receiver.recv_frame(timeout=10))
    assert reply.kind == worker_replies.OK and reply.timings == (0.1, 0.2)
    return reply.value


# ----------------------------------------------------------------------------- replies


def test_a_pickled_reply_is_refused_and_runs_nothing(pair, tmp_path):
    payload = pickle.dumps(_Marker(tmp_path / "ran-in-app"), protocol=5)
    # Unpickling it is what a malicious model wants: the marker appears (the test can fail).
    pickle.loads(payload).close()
    assert (tmp_path / "ran-in-app").exists()
    (tmp_path / "ran-in-app").unlink()

    sender, receiver = pair
    sender.sock.sendall(raw_frame(payload, []))
    body, buffers = receiver.recv_frame(timeout=10)
    with pytest.raises(MalformedReplyError):
        worker_replies.decode_reply(body, buffers)
    assert not (tmp_path / "ran-in-app").exists()


def test_values_of_every_carried_type_come_back_equal(pair):
    big = np.arange(200_000, dtype=np.float64)  # through the memory file
    value = {
        "plain": [None, True, 3, 2.5, "text", float("nan"), "ü\ud800"],
        ("tuple", 1): {1, 2},
        "frozen": frozenset({"a"}),
        "bytes": b"\x00\x01",
        "bytearray": bytearray(b"xy"),
        "complex": 1 + 2j,
        "path": Path("/tmp/model"),
        "scalars": [np.float32(1.5), np.int64(7), np.bool_(True), np.str_("s")],
        "big": big,
        "matrix": np.arange(6, dtype=np.int16).reshape(2, 3),
        "dates": np.array(["2024-01-01", "NaT"], dtype="datetime64[ns]"),
        "objects": np.array(["a", 1, None, [1, 2]], dtype=object),
        "na": pd.NA,
    }
    back = round_trip(pair, value)
    assert back.keys() == value.keys()
    assert back["na"] is pd.NA
    for key in ("bytes", "bytearray", "complex", "path", "frozen", ("tuple", 1)):
        assert back[key] == value[key] and type(back[key]) is type(value[key])
    assert back["plain"][:5] == value["plain"][:5] and np.isnan(back["plain"][5])
    assert back["plain"][6] == value["plain"][6]
    assert [type(s) for s in back["scalars"]] == [type(s) for s in value["scalars"]]
    assert back["scalars"] == value["scalars"]
    for key in ("big", "matrix", "dates"):
        np.testing.assert_array_equal(back[key], value[key])
        assert back[key].dtype == value[key].dtype and back[key].flags.writeable
    assert back["objects"].dtype == object and back["objects"].tolist() == value["objects"].tolist()


def test_frames_keep_their_columns_dtypes_and_index(pair):
    frame = pd.DataFrame(
        {
            "text": pd.array(["a", None, "c"], dtype="str"),
            "objects": np.array(["x", 1, None], dtype=object),
            "nullable": pd.array([1, None, 3], dtype="Int64"),
            "flags": pd.array([True, None, False], dtype="boolean"),
            "category": pd.Categorical(["u", "v", "u"], ordered=True),
            "when": pd.to_datetime(["2024-01-01", "2024-01-02", None]),
            "number": [1.0, 2.0, 3.0],
        },
        index=pd.Index(["r1", "r2", "r3"], name="row"),
    )
    pd.testing.assert_frame_equal(round_trip(pair, frame), frame)
    duplicated = pd.DataFrame([[1, 2]], columns=["a", "a"])
    pd.testing.assert_frame_equal(round_trip(pair, duplicated), duplicated)
    multi = pd.DataFrame(
        {"v": [1, 2]}, index=pd.MultiIndex.from_arrays([[1, 2], ["a", "b"]], names=["n", "m"])
    )
    pd.testing.assert_frame_equal(round_trip(pair, multi), multi)
    series = pd.Series([1.5, 2.5], index=pd.RangeIndex(10, 12), name="score")
    pd.testing.assert_series_equal(round_trip(pair, series), series)
    empty = pd.DataFrame({"a": np.array([], dtype=np.int64)})
    pd.testing.assert_frame_equal(round_trip(pair, empty), empty)


def test_result_dataclasses_come_back_through_their_constructor(pair):
    raw = RawPrediction(
        output=np.array(["setosa", "virginica"], dtype=object),
        load_seconds=0.5,
        predict_seconds=0.01,
        from_cache=True,
        warnings=["w"],
    )
    back = round_trip(pair, raw)
    assert type(back) is RawPrediction and back.warnings == ["w"] and back.from_cache
    assert back.output.tolist() == ["setosa", "virginica"]


def test_values_replies_do_not_carry_are_refused_by_the_worker_side():
    with pytest.raises(UnsupportedResultError, match=r"_thread\.lock"):
        worker_replies.encode_ok(threading.Lock(), (0, 0))
    with pytest.raises(UnsupportedResultError, match="builtin_function_or_method"):
        worker_replies.encode_ok([len], (0, 0))
    with pytest.raises(UnsupportedResultError, match="nests deeper"):
        nested: list = []
        for _ in range(100):
            nested = [nested]
        worker_replies.encode_ok(nested, (0, 0))
    with pytest.raises(UnsupportedResultError, match="column of dtype"):
        worker_replies.encode_ok(pd.Series(pd.to_datetime(["2024-01-01"], utc=True)), (0, 0))


def reply_of(value_tree) -> bytes:
    return json.dumps({"kind": "ok", "value": value_tree, "timings": [0, 0]}).encode()


@pytest.mark.parametrize(
    "tree",
    [
        {"$": "result", "type": "os.system", "fields": {}},  # not a listed result type
        {"$": "result", "type": "deploystudio.prediction.RawPrediction", "fields": {"x": 1}},
        {"$": "array", "dtype": "|O8", "shape": [1], "buffer": 0},  # object dtype from bytes
        {"$": "array", "dtype": "<f8", "shape": [1000], "buffer": 0},  # more than the data
        {"$": "array", "dtype": "<f8", "shape": [1], "buffer": 5},  # no such buffer
        {"$": "array", "dtype": "<f8", "shape": [-1], "buffer": 0},
        {"$": "objects", "shape": [3], "items": [1]},
        {"$": "extension", "dtype": "datetime64[ns, dateutil//etc/passwd]", "values": {}},
        {
            "$": "categorical",
            "codes": {"$": "array", "dtype": "<i8", "shape": [1], "buffer": 0},
            "categories": {"$": "range", "start": 0, "stop": 1, "step": 1, "names": [None]},
            "ordered": False,
        },  # code 7 of one category
        {
            "$": "frame",
            "columns": {"$": "range", "start": 0, "stop": 2, "step": 1, "names": [None]},
            "index": {"$": "range", "start": 0, "stop": 1, "step": 1, "names": [None]},
            "values": [],
        },
        {"$": "pickle", "data": "gASV"},
        {"no tag": 1},
    ],
)
def test_malformed_values_are_refused(tree):
    with pytest.raises(MalformedReplyError):
        worker_replies.decode_reply(reply_of(tree), [bytearray(b"\x07" * 8)])


@pytest.mark.parametrize(
    "document",
    [
        b"not json",
        b"[1, 2]",
        b'{"kind": "ok", "timings": [0, 0]}',
        b'{"kind": "ok", "value": 1, "timings": [-1, 0]}',
        b'{"kind": "error", "type": 3, "message": "m", "timings": [0, 0]}',
        b'{"kind": "shell", "timings": [0, 0]}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_malformed_envelopes_are_refused(document):
    with pytest.raises(MalformedReplyError):
        worker_replies.decode_reply(document, [])


def test_errors_come_back_by_name_from_deploystudio_errors_only():
    for exc, expected in [
        (InvalidModelUriError("bad uri"), InvalidModelUriError),
        (ValueError("nope"), PredictionError),
        (type("LocalError", (WrapError,), {})("wrapped"), WrapError),  # nearest listed base
    ]:
        reply = worker_replies.decode_reply(*worker_replies.encode_error(exc, (0, 0)))
        assert reply.error_type is expected
    assert worker_replies.error_class("Exception") is PredictionError
    assert worker_replies.error_class("__builtins__") is PredictionError
    assert worker_replies.error_class("os") is PredictionError
    assert worker_replies.error_class("PredictionWorkerError") is PredictionWorkerError


# ----------------------------------------------------------------------------- frames


def test_spans_outside_the_memory_file_are_refused(pair):
    sender, receiver = pair
    os.pwrite(sender.outgoing_fd, b"x" * 100, 0)
    for span in [(1, 50, 51), (1, 2**63, 10), (1, 0, 2**64 - 1)]:
        sender.sock.sendall(raw_frame(b"{}", [span]))
        with pytest.raises(MalformedMessageError):
            receiver.recv_frame(timeout=10)
    # Inside the file it is read; a span the inline data does not hold is refused too.
    sender.sock.sendall(raw_frame(b"{}", [(1, 10, 20)]))
    assert receiver.recv_frame(timeout=10)[1] == [bytearray(b"x" * 20)]
    for span in [(0, 0, 5), (2, 0, 1)]:
        sender.sock.sendall(raw_frame(b"{}", [span], inline=b"abc"))
        with pytest.raises(MalformedMessageError):
            receiver.recv_frame(timeout=10)


def test_frames_that_lie_about_their_size_or_stall_are_refused(pair):
    sender, receiver = pair
    sender.sock.sendall(struct.pack("!Q", 2**62))  # would need 4 EiB: refused before allocating
    with pytest.raises(MalformedMessageError, match="frame of"):
        receiver.recv_frame(timeout=10)
    sender.sock.sendall(struct.pack("!Q", 100) + struct.pack("!IQ", 0, 50))  # then nothing
    started = time.monotonic()
    with pytest.raises(MalformedMessageError, match="halfway"):
        receiver.recv_frame(timeout=0.5)
    assert time.monotonic() - started < 5
    body = struct.pack("!IQ", 2, 10)  # two spans and a body that the frame does not hold
    sender.sock.sendall(struct.pack("!Q", len(body)) + body)
    with pytest.raises(MalformedMessageError, match="shorter"):
        receiver.recv_frame(timeout=10)
    sender.sock.close()
    with pytest.raises(EOFError):
        receiver.recv_frame(timeout=10)


def test_a_memory_file_shrunk_by_the_other_side_is_a_short_read_not_a_crash(pair):
    sender, receiver = pair
    big = np.arange(100_000, dtype=np.float64)
    sender.send_frame(b"{}", [memoryview(big)])
    os.ftruncate(sender.outgoing_fd, 16)  # the writer takes the data back before it is read
    with pytest.raises(MalformedMessageError, match="outside the memory file"):
        receiver.recv_frame(timeout=10)


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    worker = PredictionWorker(tmp_path_factory.mktemp("worker") / "worker.log", timeout_seconds=60)
    yield worker
    worker.stop()


def hijacking_model(tmp_path: Path, frame_code: str, marker: Path) -> Path:
    """A pyfunc model whose predict takes its worker over: it writes the frame `frame_code`
    builds (from `marker`, the file the app must never create) straight to the worker's
    socket, then answers as usual."""
    code = tmp_path / "model_code.py"
    code.write_text(
        textwrap.dedent(
            """
            import os, pickle, socket, struct, sys
            import mlflow

            class Evil:
                def __init__(self, path):
                    self.path = path
                def __reduce__(self):
                    return (open, (self.path, "w"))

            class Model(mlflow.pyfunc.PythonModel):
                def predict(self, context, model_input, params=None):
                    marker = MARKER
                    frame = FRAME
                    # The worker's socket is the first number on its command line.
                    sock = socket.socket(fileno=os.dup(int(sys.argv[1])))
                    sock.sendall(struct.pack("!Q", len(frame)) + frame)
                    return [1] * len(model_input)

            mlflow.models.set_model(Model())
            """
        )
        .replace("FRAME", frame_code)
        .replace("MARKER", repr(str(marker)))
    )
    path = tmp_path / "model"
    # No requirements to infer: that would load the model in a subprocess of the test.
    mlflow.pyfunc.save_model(str(path), python_model=str(code), pip_requirements=[])
    return path


@pytest.mark.parametrize(
    "frame_code",
    [
        # A pickle whose loading would create the marker file in the app.
        'struct.pack("!IQ", 0, len(p := pickle.dumps(Evil(marker)))) + p',
        # A buffer span far outside the replies' memory file.
        'struct.pack("!IQ", 1, 2) + struct.pack("!BQQ", 1, 2**40, 8) + b"{}"',
    ],
    ids=["pickle", "span-outside"],
)
def test_a_model_that_writes_its_own_reply_is_refused_and_its_worker_restarted(
    worker, tmp_path, frame_code
):
    marker = tmp_path / "ran-in-app"
    path = hijacking_model(tmp_path, frame_code, marker)
    before = worker.call(os.getpid)
    with pytest.raises(PredictionWorkerError, match="unreadable reply"):
        worker.predict(path, ModelInput(pd.DataFrame({"x": [1]})))
    assert not marker.exists()
    assert not worker.alive  # stopped at once: what it sends next is not trusted either
    assert worker.call(os.getpid) not in (before, None)
    assert worker.call(len, "ab") == 2


def test_call_results_of_other_types_are_an_error_not_a_dead_worker(worker):
    with pytest.raises(PredictionError, match="cannot be sent back to the app"):
        worker.call(threading.Lock)
    with pytest.raises(PredictionError, match="cannot be sent back to the app"):
        worker.call(pd.to_datetime, ["2024-01-01T00:00:00+00:00"])  # a time zone
    assert worker.call(len, [1]) == 1


def _round_trip(value):
    body, buffers = worker_replies.encode_ok(value, (0, 0))
    return worker_replies.decode_reply(body, [bytes(b) for b in buffers]).value, body


def test_long_text_arrays_travel_as_buffers_and_come_back_equal():
    count = worker_replies.STRINGS_MIN_ITEMS * 4
    labels = np.array(["setosa", "versicolor", "", "é€😀", "a,b\n"] * count, dtype=object)
    grid = labels[: count * 4].reshape(count, 4)
    frame = pd.DataFrame({"label": labels[:count]})
    for value in (labels, grid, frame):
        back, body = _round_trip(value)
        assert b'"strings"' in body and "setosa" not in body.decode()  # not as JSON items
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(back, value)
        else:
            assert back.dtype == object and back.shape == value.shape
            assert back.tolist() == value.tolist()


def test_text_arrays_that_are_short_mixed_or_not_unicode_stay_json_items():
    count = worker_replies.STRINGS_MIN_ITEMS
    for value in (
        np.array(["a", "b"], dtype=object),
        np.array(["a", None] * count, dtype=object),
        np.array(["a", 1] * count, dtype=object),
        np.array(["lone \ud800 surrogate"] * count, dtype=object),
    ):
        back, body = _round_trip(value)
        assert b'"objects"' in body and b'"strings"' not in body
        assert back.tolist() == value.tolist()


@pytest.mark.parametrize(
    ("offsets", "data"),
    [
        ([0, 2, 1], b"abc"),  # goes back
        ([0, 1, 9], b"abc"),  # past the data
        ([0, 1, 2], b"abc"),  # data left over
        ([1, 2, 3], b"abc"),  # does not start at 0
        ([0, 1], b"a"),  # fewer offsets than the shape needs
        ([0, 1, 3], b"a\xff\xfe"),  # not UTF-8
    ],
)
def test_malformed_text_buffers_are_refused(offsets, data):
    tree = {"$": "strings", "shape": [2], "offsets": 0, "data": 1}
    buffers = [np.array(offsets, dtype=np.int32).tobytes(), data]
    with pytest.raises(MalformedReplyError):
        worker_replies.decode_reply(reply_of(tree), buffers)
