"""Request bodies and ready-to-edit HTTP calls for one model input (the Predict page's
snippets and the Endpoints page's calls).

The bodies come from `payload_formats.write_payload`, so they are exactly what this app parses;
the calls fill in placeholders (PORT, <KEY>, <endpoint>, <region>, <deployment>) that the user
replaces with their endpoint's values.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

import pandas as pd

from deploystudio.payload_formats import ModelInput, PayloadFormat, write_payload

LOCAL_SCORING_URL = "http://127.0.0.1:PORT/score"
AZURE_SCORING_URL = "https://<endpoint>.<region>.inference.ml.azure.com/score"
KEY_PLACEHOLDER = "<KEY>"
DEPLOYMENT_PLACEHOLDER = "<deployment>"
BODY_FILE = "request.json"
# Past this, a body pasted into a command is unreadable: the calls read it from BODY_FILE.
MAX_INLINE_BODY_CHARS = 4000
REQUEST_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class RequestSnippets:
    """Bodies (pretty JSON) and calls for a local and an Azure endpoint."""

    azure_body: str
    mlflow_body: str
    mlflow_format: PayloadFormat
    local_curl: str
    local_python: str
    azure_curl: str
    azure_python: str
    inline: bool  # False: the calls read the Azure body from BODY_FILE


def mlflow_format_for(model_input: ModelInput) -> PayloadFormat:
    """MLflow's usual body for this input: `dataframe_split` for tables, `inputs` for tensors."""
    if isinstance(model_input.data, pd.DataFrame):
        return PayloadFormat.DATAFRAME_SPLIT
    return PayloadFormat.INPUTS


def request_snippets(
    model_input: ModelInput, max_inline_chars: int = MAX_INLINE_BODY_CHARS
) -> RequestSnippets:
    """Raises PayloadError when the input cannot be written as a request body."""
    azure = _text(write_payload(model_input, PayloadFormat.AZURE_INPUT_DATA))
    mlflow_format = mlflow_format_for(model_input)
    mlflow = _text(write_payload(model_input, mlflow_format))
    inline = len(azure) <= max_inline_chars
    local_headers = {"Authorization": f"Bearer {KEY_PLACEHOLDER}"}
    azure_headers = {**local_headers, "azureml-model-deployment": DEPLOYMENT_PLACEHOLDER}
    return RequestSnippets(
        azure_body=pretty_json(azure),
        mlflow_body=pretty_json(mlflow),
        mlflow_format=mlflow_format,
        local_curl=curl_command(LOCAL_SCORING_URL, local_headers, azure, inline),
        local_python=python_requests_call(LOCAL_SCORING_URL, local_headers, azure, inline),
        azure_curl=curl_command(AZURE_SCORING_URL, azure_headers, azure, inline),
        azure_python=python_requests_call(AZURE_SCORING_URL, azure_headers, azure, inline),
        inline=inline,
    )


def curl_command(url: str, headers: dict[str, str], body: str, inline: bool = True) -> str:
    lines = [f"curl -X POST {shlex.quote(url)}"]
    for name, value in {**headers, "Content-Type": "application/json"}.items():
        lines.append(f"  -H {shlex.quote(f'{name}: {value}')}")
    lines.append(
        f"  --data-binary {shlex.quote(_compact(body))}"
        if inline
        else f"  --data-binary @{BODY_FILE}"
    )
    return " \\\n".join(lines)


def python_requests_call(url: str, headers: dict[str, str], body: str, inline: bool = True) -> str:
    header_lines = "".join(
        f"    {json.dumps(k)}: {json.dumps(v)},\n"
        for k, v in {**headers, "Content-Type": "application/json"}.items()
    )
    literal = _python_literal(body) if inline else None
    if literal is not None:
        body_lines = f"body = {literal}\n"
        send = "json=body"
    elif inline:  # JSON with Infinity has no Python literal: send the text as it is
        body_lines = f"body = {_compact(body)!r}\n"
        send = 'data=body.encode("utf-8")'
    else:
        body_lines = (
            f'with open("{BODY_FILE}", encoding="utf-8") as file:\n    body = file.read()\n'
        )
        send = 'data=body.encode("utf-8")'
    return (
        "import requests\n\n"
        f"url = {json.dumps(url)}\n"
        f"headers = {{\n{header_lines}}}\n"
        f"{body_lines}"
        f"response = requests.post(url, headers=headers, {send}, "
        f"timeout={REQUEST_TIMEOUT_SECONDS})\n"
        "response.raise_for_status()\n"
        "print(response.json())\n"
    )


def pretty_json(text: str, indent: int = 2) -> str:
    """JSON with one item per line, except that a list of plain values stays on one line
    (a table row, or the innermost level of a tensor)."""
    return _pretty(json.loads(text), 0, indent)


def _pretty(value: Any, level: int, indent: int, python: bool = False) -> str:
    """JSON text of `value`, or with `python` a Python literal of it (True, False, None)."""
    inner, outer = " " * (indent * (level + 1)), " " * (indent * level)
    if isinstance(value, dict) and value:
        items = [
            f"{inner}{json.dumps(k, ensure_ascii=False)}: {_pretty(v, level + 1, indent, python)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + outer + "}"
    if isinstance(value, list) and any(isinstance(v, list | dict) and v for v in value):
        items = [f"{inner}{_pretty(v, level + 1, indent, python)}" for v in value]
        return "[\n" + ",\n".join(items) + "\n" + outer + "]"
    if isinstance(value, list):
        return "[" + ", ".join(_pretty(v, level, indent, python) for v in value) + "]"
    if python and (value is None or isinstance(value, bool)):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def _compact(text: str) -> str:
    return json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))


def _python_literal(text: str) -> str | None:
    """The body as a Python dict literal; None if it holds Infinity or NaN (no literal)."""

    def refuse(constant: str) -> Any:
        raise ValueError(constant)

    try:
        value = json.loads(text, parse_constant=refuse)
    except ValueError:
        return None
    return _pretty(value, 0, 4, python=True)


def _text(body: str | bytes) -> str:
    return body.decode("utf-8") if isinstance(body, bytes) else body
