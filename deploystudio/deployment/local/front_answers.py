"""The front's answers and the headers it forwards: its own JSON errors, the model server's
message, request ids (front.py routes; this module shapes what goes in and out)."""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

from aiohttp import web

from deploystudio.deployment.local.routing import DEPLOYMENT_HEADER

REQUEST_ID_HEADER = "x-request-id"
# Azure's headers on a 424: the model server's status and a short reason.
MODEL_STATUS_HEADER = "ms-azureml-model-error-statuscode"
MODEL_REASON_HEADER = "ms-azureml-model-error-reason"
MAX_REASON_HEADER = 200

# Hop-by-hop headers (RFC 9110 7.6.1) and those the client library sets itself. Authorization
# holds the endpoint key: it never reaches the model server.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_DROP_REQUEST = frozenset(
    name.encode() for name in _HOP_BY_HOP | {"host", "content-length", "authorization", "expect"}
)
# The front sets x-request-id and azureml-model-deployment itself.
DROP_RESPONSE = frozenset(
    name.encode()
    for name in _HOP_BY_HOP
    | {"content-length", "date", "server", REQUEST_ID_HEADER, DEPLOYMENT_HEADER}
)
_REQUEST_ID = REQUEST_ID_HEADER.encode()


def forwarded_headers(request: web.Request, request_id: str) -> list[tuple[bytes, bytes]]:
    """The caller's headers as sent (raw bytes), less hop-by-hop ones and the key."""
    headers = [
        (name, value)
        for name, value in request.raw_headers
        if name.lower() not in _DROP_REQUEST and name.lower() != _REQUEST_ID
    ]
    headers.append((_REQUEST_ID, request_id.encode("latin-1", errors="replace")))
    return headers


def json_response(
    status: int,
    body: dict[str, Any],
    request_id: str,
    deployment: str | None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    all_headers = {REQUEST_ID_HEADER: request_id, **(headers or {})}
    if deployment is not None:
        all_headers[DEPLOYMENT_HEADER] = deployment
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers=all_headers,
    )


def model_message(payload: bytes) -> str:
    """The model server's error message: the JSON `message` (azmlinfsrv, MLflow) or the text."""
    text = payload.decode("utf-8", errors="replace")
    with contextlib.suppress(ValueError):
        decoded = json.loads(text)
        if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
            return decoded["message"]
    return text.strip()[:2000] or "(empty answer)"


def header_safe(text: str) -> str:
    """One printable ASCII line, short enough for a response header."""
    flat = " ".join(text.split()).encode("ascii", errors="replace").decode("ascii")
    return flat[:MAX_REASON_HEADER]


async def tag_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer carries x-request-id, including the router's own 404 and 405."""
    if REQUEST_ID_HEADER not in response.headers:
        response.headers[REQUEST_ID_HEADER] = request.get(REQUEST_ID_HEADER) or request.headers.get(
            REQUEST_ID_HEADER, str(uuid.uuid4())
        )


# MLflow's scoring server drops keys it does not know before it complains, so Azure's
# `input_data` body gets "Received dictionary with input fields: []" and no word about why.
_MLFLOW_NO_FORMAT = b"Received dictionary with input fields"
_AZURE_INPUT_KEY = b'"input_data"'
INPUT_DATA_HINT = (
    " This deployment runs MLflow's scoring server, which reads dataframe_split, "
    "dataframe_records, instances or inputs. Azure ML's input_data body is what the Azure ML "
    "inference server reads: deploy with the azureml runtime, or send "
    '{"dataframe_split": {"columns": [...], "data": [[...]]}} here.'
)


def with_input_data_hint(answer: bytes, request_body: bytes | bytearray) -> bytes | None:
    """MLflow's 400 for a body with Azure's `input_data`, with a hint added to its message;
    None when the answer is anything else."""
    if _MLFLOW_NO_FORMAT not in answer or _AZURE_INPUT_KEY not in request_body:
        return None
    try:
        decoded = json.loads(answer)
    except ValueError:
        return None
    if not isinstance(decoded, dict) or not isinstance(decoded.get("message"), str):
        return None
    decoded["message"] += INPUT_DATA_HINT
    return json.dumps(decoded).encode()
