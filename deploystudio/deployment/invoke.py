"""Call an endpoint's scoring URI as a client would: the body, the key, the answer or the error.

The front answers with Azure's status codes; each becomes the DeployStudioError a user can act
on, with the server's own message.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from deploystudio.deployment.base import Runtime
from deploystudio.errors import (
    DeploymentNotFoundError,
    EndpointAuthError,
    PayloadError,
    PredictionError,
    ScoringServerError,
)
from deploystudio.payload_formats import ModelInput, PayloadFormat, write_payload

DEPLOYMENT_HEADER = "azureml-model-deployment"
REQUEST_ID_HEADER = "x-request-id"
DEFAULT_TIMEOUT_SECONDS = 60.0
METRICS_PATH = "/_deploystudio/metrics"
# Top-level keys of a body that is already a request (Azure's or one of MLflow's formats).
_REQUEST_KEYS = {"input_data", *(f.value for f in PayloadFormat)}


def request_body(inputs: Any, params: Mapping[str, Any] | None, runtime: Runtime) -> bytes:
    """The JSON body for `inputs`: a request dict as given, else the runtime's format.

    A DataFrame, array or dict of arrays is written with MLflow's serving helpers
    (`payloads.write_payload`): Azure's `input_data` for the azureml runtime, MLflow's
    `dataframe_split` / `inputs` for MLflow's server.
    """
    if isinstance(inputs, Mapping) and inputs and set(inputs) <= _REQUEST_KEYS | {"params"}:
        body = dict(inputs)
        if params:
            body["params"] = dict(params)
        return json.dumps(body).encode("utf-8")
    if isinstance(inputs, list):
        inputs = np.asarray(inputs)
    elif isinstance(inputs, Mapping):
        inputs = {k: np.asarray(v) for k, v in inputs.items()}
    if not isinstance(inputs, pd.DataFrame | np.ndarray | dict):
        raise PayloadError(
            f"Cannot send {type(inputs).__name__} to an endpoint: give a DataFrame, a list, an "
            'array, a dict of arrays, or a request such as {"input_data": ...}.'
        )
    model_input = ModelInput(inputs, dict(params) if params else None)
    if runtime is Runtime.AZUREML:
        payload_format = PayloadFormat.AZURE_INPUT_DATA
    elif isinstance(inputs, pd.DataFrame):
        payload_format = PayloadFormat.DATAFRAME_SPLIT
    else:
        payload_format = PayloadFormat.INPUTS
    text = write_payload(model_input, payload_format)
    return text.encode("utf-8") if isinstance(text, str) else text


@dataclass(frozen=True)
class Answer:
    """An endpoint's answer with what its front says about it."""

    body: Any
    # The deployment that answered and the request's id (the front's response headers).
    deployment: str | None
    request_id: str | None
    seconds: float


def post(
    url: str,
    body: bytes,
    key: str | None = None,
    deployment: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> Any:
    """POST `body` to `url`; the decoded JSON answer. Errors become DeployStudioErrors."""
    return call(url, body, key, deployment, timeout).body


def call(
    url: str,
    body: bytes,
    key: str | None = None,
    deployment: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> Answer:
    """POST `body` to `url`; the answer, who gave it and how long the round trip took.

    Errors become DeployStudioErrors (as `post`).
    """
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if deployment:
        headers[DEPLOYMENT_HEADER] = deployment
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = _decoded(response.read())
            return Answer(
                answer,
                response.headers.get(DEPLOYMENT_HEADER),
                response.headers.get(REQUEST_ID_HEADER),
                time.perf_counter() - started,
            )
    except urllib.error.HTTPError as exc:
        raise _http_error(exc.code, _decoded(exc.read()), url) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ScoringServerError(
            f"Nothing answered at {url} ({getattr(exc, 'reason', exc)}). The endpoint's front "
            "may have stopped: restart Deploy Studio, or restart the endpoint."
        ) from None


def front_view(front_url: str, key: str | None, timeout: float = 2.0) -> dict[str, Any] | None:
    """What the endpoint's front currently serves (its metrics document: "config" with traffic
    and mirror, "deployments" with state and port), or None when it does not answer or refuses
    the key."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(front_url + METRICS_PATH, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = _decoded(response.read())
    except (urllib.error.URLError, OSError, TimeoutError):
        return None
    return answer if isinstance(answer, dict) else None


def _decoded(raw: bytes) -> Any:
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _message(answer: Any) -> str:
    if isinstance(answer, dict):
        for key in ("message", "error", "detail"):
            if answer.get(key):
                return str(answer[key])
    return str(answer)[:2000]


def _http_error(status: int, answer: Any, url: str) -> Exception:
    message = _message(answer)
    if status == 401:
        return EndpointAuthError(
            f"The endpoint refused the key (401): {message}. Use a current key (`deploystudio "
            "endpoint keys NAME`)."
        )
    if status == 404:
        return DeploymentNotFoundError(f"No deployment answered at {url} (404): {message}")
    if status == 503:
        return ScoringServerError(
            f"The deployment is not ready (503): {message}. Check its status and log, or restart "
            "it."
        )
    if status == 408:
        return PredictionError(f"The model did not answer in time (408): {message}")
    if 400 <= status < 500:
        return PayloadError(f"The model refused the input ({status}): {message}")
    return PredictionError(f"The model server failed ({status}): {message}")
