"""Generated uploads (encodings, BOM, ragged rows, empty, oversize, binary junk) through the
Predict page's upload parsing and the batch job's file reader: a result or a message, never a
crash."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlflow.models import Model

from components.payload_upload import parse_upload, upload_cache_key
from deploystudio.deployment.batch import scoring as batch_scoring
from deploystudio.deployment.batch.inputs import is_scorable
from deploystudio.payloads import DEFAULT_MAX_BYTES
from deploystudio.prediction import local_model_path
from tests.reliability.conftest import examples
from tests.reliability.figures import FIGURES
from tests.reliability.strategies import leaves

SUITE = "uploads"
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252")
SUFFIXES = (".csv", ".parquet", ".pq", ".json", ".npy", ".txt", "")
cells = st.one_of(
    leaves.map(lambda v: "" if v is None else str(v)),
    st.sampled_from(['"', '""', '"a,b"', "\r", "\n", ",", ";", "\t", "é", "\x00", "1e999"]),
)


@st.composite
def csv_texts(draw) -> str:
    header = draw(
        st.sampled_from(
            [
                "sepal_length,sepal_width,petal_length,petal_width",
                "a,b",
                "",
                "x",
            ]
        )
    )
    width = max(1, header.count(",") + 1)
    rows = draw(
        st.lists(
            st.lists(cells, min_size=draw(st.integers(0, 1)) * width, max_size=width + 2),
            max_size=8,
        )
    )
    separator = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return separator.join([header, *(",".join(row) for row in rows)])


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)  # an object array is written as a pickle
    return buffer.getvalue()


frames = st.lists(
    st.tuples(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5)), max_size=5
).map(lambda rows: pd.DataFrame(rows, columns=["sepal_length", "petal_width"]))
# Built from a name, so that a failure report shows the name rather than the whole array.
ARRAYS = {
    "digits": lambda: np.zeros((2, 8, 8), dtype="float32"),
    "ints": lambda: np.zeros((3,), dtype="int64"),
    "empty": lambda: np.array([], "float64"),
    "text": lambda: np.array(["a", "b"]),
    "objects": lambda: np.array([{"x": 1}], dtype=object),
    "nan": lambda: np.full((1, 64), np.nan),
}
arrays = st.sampled_from(sorted(ARRAYS)).map(lambda name: ARRAYS[name]())
contents = st.one_of(
    st.builds(lambda t, enc: t.encode(enc, "replace"), csv_texts(), st.sampled_from(ENCODINGS)),
    st.builds(lambda t, cut: t.encode("utf-16", "replace")[:cut], csv_texts(), st.integers(1, 40)),
    st.binary(max_size=400),
    st.sampled_from([b"", b"\xef\xbb\xbf", b" \n", b"PAR1", b"PAR1\x00PAR1", b"\x93NUMPY\x01"]),
    frames.map(_parquet),
    frames.map(_parquet).map(lambda b: b[: len(b) // 2]),  # a truncated file
    arrays.map(_npy),
    arrays.map(_npy).map(lambda b: b[:-3]),
)


@pytest.fixture(scope="module")
def iris_signature(settings, registry, seeded):
    return Model.load(local_model_path("models:/iris-classifier/1", settings, registry)).signature


def test_generated_uploads_read_or_say_why(iris_signature, tmp_path_factory):
    FIGURES.measured(SUITE, "cases tried", "crashes")
    folder = tmp_path_factory.mktemp("uploads")

    @examples(default=100, long=600)
    @given(body=contents, suffix=st.sampled_from(SUFFIXES), signed=st.booleans())
    def run(body, suffix, signed):
        name = f"upload{suffix}"
        signature = iris_signature if signed else None
        FIGURES.add(SUITE, "cases tried", 2)  # the Predict page's reader and the batch reader
        try:
            parsed = parse_upload(body, name, signature, upload_cache_key(body, name, "iris"))
            assert (parsed.error is None) != (parsed.model_input is None)
            assert parsed.error is None or parsed.error.strip()
            read_batch_file(folder / name, body)
        except Exception:
            FIGURES.add(SUITE, "crashes")
            raise

    run()


def read_batch_file(path, body: bytes) -> None:
    """Read `path` as a batch job does, in chunks: rows, or the job's per-file message."""
    path.write_bytes(body)
    if not is_scorable(path):
        return  # such files are reported as unsupported, never read
    try:
        for frame in batch_scoring._chunks(path, chunk_rows=3):
            assert isinstance(frame, pd.DataFrame)
    except batch_scoring._FileError as exc:
        assert str(exc).strip() and path.name in str(exc)


def test_an_oversize_upload_is_refused_with_its_size(iris_signature):
    body = b"a,b\n" + b"1,2\n" * (DEFAULT_MAX_BYTES // 4 + 1)
    parsed = parse_upload(body, "big.csv", iris_signature, ("x", "big.csv", "iris"))
    FIGURES.add(SUITE, "cases tried")
    assert parsed.model_input is None and "over the limit" in parsed.error
