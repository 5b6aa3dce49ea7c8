"""The upload input of a preview: a CSV, Parquet, JSON or NPY file, read once per file.

Streamlit reruns the page on every widget change; a 100,000-row file would be read and parsed
again each time. The parse is kept in the session per model, under the file's content hash,
its name (which decides the format) and the model, and reused while they stay the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st
from mlflow.models import ModelSignature

from components.typed_inputs import render_params
from deploystudio.errors import PayloadError
from deploystudio.inspection import SignatureInfo
from deploystudio.payload_formats import ModelInput, PayloadFormat
from deploystudio.payloads import detect_format, parse_payload

UPLOAD_TYPES = ["csv", "parquet", "pq", "json", "npy"]
PREVIEW_ROWS = 20


@dataclass(frozen=True)
class ParsedUpload:
    """One uploaded file as read for one model: its input, or why it could not be read."""

    cache_key: tuple[str, str, str]
    payload_format: PayloadFormat | None
    model_input: ModelInput | None
    error: str | None


def parsed_upload_key(key: str) -> str:
    """The session-state key of a model's last parsed upload (tests read it)."""
    return f"{key}_upload_parsed"


def upload_cache_key(body: bytes, filename: str, model: str) -> tuple[str, str, str]:
    return hashlib.sha256(body).hexdigest(), filename, model


def parse_upload(
    body: bytes, filename: str, signature: ModelSignature | None, cache_key: tuple[str, str, str]
) -> ParsedUpload:
    try:
        payload_format = detect_format(body, filename)
        model_input = parse_payload(body, signature, payload_format=payload_format)
    except PayloadError as exc:
        return ParsedUpload(cache_key, None, None, str(exc))
    return ParsedUpload(cache_key, payload_format, model_input, None)


def render_upload_source(
    info: SignatureInfo | None, signature: ModelSignature | None, model: str, key: str
) -> Callable[[], ModelInput] | None:
    """`model` names the model (its path): a parse is reused only for the same model."""
    uploaded = st.file_uploader(
        "CSV, Parquet, JSON or NPY file",
        type=UPLOAD_TYPES,
        key=f"{key}_upload",
        help="The format is recognised from the file name and its content.",
    )
    state_key = parsed_upload_key(key)
    if uploaded is None:
        st.session_state.pop(state_key, None)  # nothing to keep once the file is removed
        st.caption("Tables as CSV or Parquet, tensors as NPY, any request body as JSON.")
        return None
    body = uploaded.getvalue()
    cache_key = upload_cache_key(body, uploaded.name, model)
    parsed: ParsedUpload | None = st.session_state.get(state_key)
    if parsed is None or parsed.cache_key != cache_key:
        parsed = parse_upload(body, uploaded.name, signature, cache_key)
        st.session_state[state_key] = parsed
    if parsed.error is not None:
        st.error(parsed.error)
        return None
    model_input = parsed.model_input
    st.caption(f"`{uploaded.name}` read as {parsed.payload_format.label}: {_describe(model_input)}")
    _preview(model_input)
    params = model_input.params
    if not parsed.payload_format.carries_params and info is not None:
        params = render_params(info.params, f"{key}_upload") or params
    return lambda: ModelInput(model_input.data, params, list(model_input.warnings))


def _describe(model_input: ModelInput) -> str:
    data = model_input.data
    if isinstance(data, pd.DataFrame):
        return f"{len(data)} row(s) × {data.shape[1]} column(s)"
    if isinstance(data, np.ndarray):
        return f"a tensor of shape {data.shape} ({data.dtype})"
    return ", ".join(f"tensor '{n}' {a.shape}" for n, a in data.items())


def _preview(model_input: ModelInput) -> None:
    data = model_input.data
    if isinstance(data, pd.DataFrame):
        st.dataframe(data.head(PREVIEW_ROWS), hide_index=True)
    elif isinstance(data, np.ndarray) and data.ndim <= 2:
        st.dataframe(pd.DataFrame(np.atleast_2d(data)[:PREVIEW_ROWS]))
