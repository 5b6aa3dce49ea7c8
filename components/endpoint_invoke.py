"""Call an endpoint as a client would: the Predict page's input editor, the answer, who gave
it and how long it took, and the same call as curl and Python.

The editor is built from one deployment's model (its signature and input example); traffic
decides who answers unless the user names a deployment (the `azureml-model-deployment` header).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import streamlit as st

from components import access, services
from components.input_sources import render_input_sources
from components.payload_editor import (
    InputBuilder,
)
from components.payload_json import default_request_text, render_json_source
from deploystudio.access import Action
from deploystudio.deployment import invoke, rollout
from deploystudio.deployment.base import AuthMode, Capability, Deployment, Endpoint, Runtime
from deploystudio.errors import DeployStudioError
from deploystudio.snippets import KEY_PLACEHOLDER, curl_command, python_requests_call

TRAFFIC_DECIDES = "(traffic decides)"


@dataclass(frozen=True)
class InvokeResult:
    """The last call of this session to one endpoint (a view: no key in it)."""

    deployment: str | None
    body: str
    answer: invoke.Answer


def editor_model(
    endpoint: Endpoint, deployments: Sequence[Deployment], chosen: str | None
) -> Deployment:
    """The deployment whose model the editor is built from: the chosen one, else the one with
    the most live traffic."""
    by_name = {d.name: d for d in deployments}
    if chosen in by_name:
        return by_name[chosen]
    return max(deployments, key=lambda d: endpoint.traffic.get(d.name, 0))


def call_headers(key: str | None, deployment: str | None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if deployment:
        headers[invoke.DEPLOYMENT_HEADER] = deployment
    return headers


def render_invoke(endpoint: Endpoint, deployments: Sequence[Deployment]) -> None:
    if not deployments or endpoint.scoring_uri is None:
        st.info("Nothing to call yet: the endpoint needs a running front and a deployment.")
        return
    prefix = f"invoke_{endpoint.name}"
    choice = st.selectbox(
        "Send to",
        [TRAFFIC_DECIDES, *(d.name for d in deployments)],
        key=f"{prefix}_to",
        help="A named deployment is reached with the azureml-model-deployment header, whatever "
        "its share of traffic.",
    )
    deployment = None if choice == TRAFFIC_DECIDES else choice
    model = editor_model(endpoint, deployments, deployment)
    st.caption(f"Input editor for **{model.name}**'s model `{model.model_uri}`.")
    builder = _render_editor(model.model_uri, prefix)
    result_key = f"{prefix}_result"
    if st.button("Send", type="primary", icon=":material/send:", key=f"{prefix}_send"):
        st.session_state.pop(result_key, None)
        if builder is None:
            st.warning("The chosen tab has no input to send: fill it in, or use another tab.")
        else:
            try:
                result = _send(endpoint, deployments, deployment, builder)
                st.session_state[result_key] = result
                _note_test_call(endpoint, result)
            except DeployStudioError as exc:
                st.error(str(exc))
            except (ValueError, TypeError) as exc:  # a value no payload check foresaw
                st.error(f"The input could not be sent: {exc}")
    result: InvokeResult | None = st.session_state.get(result_key)
    if result is None:
        return
    answer = result.answer
    left, middle, right = st.columns(3)
    left.metric("Answered by", answer.deployment or "?")
    middle.metric("Round trip", f"{answer.seconds * 1000:.1f} ms")
    right.caption(f"Request id `{answer.request_id}`")
    st.json(answer.body, expanded=2)
    _render_snippets(endpoint, result, prefix)


def _render_editor(model_uri: str, prefix: str) -> InputBuilder | None:
    settings = services.get_settings()
    try:
        inspection = services.inspection(settings.registry_uri, model_uri)
        model_path = services.model_path(settings.registry_uri, inspection.resolved_uri)
        signature = services.model_signature(str(model_path))
    except DeployStudioError as exc:
        st.info(f"No editor from the model ({exc}): write the request body as JSON.")
        return render_json_source(default_request_text(None, None, None), None, f"{prefix}_raw")
    key = f"{prefix}_" + hashlib.sha256(inspection.resolved_uri.encode()).hexdigest()[:12]
    return render_input_sources(inspection, signature, model_path, key)[1]


def _send(
    endpoint: Endpoint,
    deployments: Sequence[Deployment],
    deployment: str | None,
    builder: InputBuilder,
) -> InvokeResult:
    model_input = builder()
    if deployment is not None:
        runtime = next(d.runtime for d in deployments if d.name == deployment)
    else:
        runtimes = {d.runtime for d in deployments}
        runtime = runtimes.pop() if len(runtimes) == 1 else Runtime.AZUREML
    body = invoke.request_body(model_input.data, model_input.params, runtime)
    key = _primary_key(endpoint)
    with st.spinner("Calling the endpoint…"):
        answer = invoke.call(endpoint.scoring_uri, body, key, deployment)
    return InvokeResult(deployment, body.decode("utf-8"), answer)


def _note_test_call(endpoint: Endpoint, result: InvokeResult) -> None:
    """A call sent to one named deployment is a direct test of it: recorded as the safe
    rollout's test step records its own, so the checklist ticks "Test NEW directly" whichever
    tab made the call."""
    target = services.endpoint_target()
    if result.deployment is None or not target.supports(Capability.HISTORY):
        return
    target.note(
        endpoint.name,
        rollout.TEST_CALL_ACTION,
        f"{endpoint.name}/{result.deployment}",
        {"answered_by": result.answer.deployment or result.deployment},
        actor=services.current_actor(),
    )


def _primary_key(endpoint: Endpoint) -> str | None:
    if endpoint.auth_mode is not AuthMode.KEY:
        return None
    return services.endpoint_target().get_keys(endpoint.name).primary


def _render_snippets(endpoint: Endpoint, result: InvokeResult, prefix: str) -> None:
    with st.expander("The same call as curl and Python", icon=":material/code:"):
        key = None
        if endpoint.auth_mode is AuthMode.KEY:
            # The toggle remembers whether to show the key; the key itself is read on each run.
            revealed = st.toggle(
                "Show the key in the calls",
                key=f"{prefix}_show_key",
                **access.button_args(Action.SEE_KEYS),
            ) and access.allowed(Action.SEE_KEYS)
            key = _primary_key(endpoint) if revealed else KEY_PLACEHOLDER
            if not revealed:
                st.caption(f"Replace {KEY_PLACEHOLDER} with one of the endpoint's keys.")
        headers = call_headers(key, result.deployment)
        assert endpoint.scoring_uri is not None
        curl, python = st.tabs(["curl", "Python"])
        curl.code(curl_command(endpoint.scoring_uri, headers, result.body), language="bash")
        python.code(
            python_requests_call(endpoint.scoring_uri, headers, result.body), language="python"
        )
