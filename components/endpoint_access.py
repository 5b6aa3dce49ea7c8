"""How to reach one deployment once it runs: its state from the store, the scoring URI, the key
(hidden until revealed), a test call with the model's input example and ready-made calls.

A failed start shows the reason and the server's log tail that its record keeps.
"""

from __future__ import annotations

import streamlit as st

from components import access, services
from deploystudio.access import Action
from deploystudio.deployment.base import (
    AuthMode,
    Capability,
    Deployment,
    DeploymentState,
    DeploymentTarget,
    Endpoint,
)
from deploystudio.deployment.invoke import DEPLOYMENT_HEADER, request_body
from deploystudio.errors import (
    DeploymentNotFoundError,
    DeployStudioError,
    EndpointNotFoundError,
)
from deploystudio.inspection import ModelInspection
from deploystudio.snippets import (
    BODY_FILE,
    KEY_PLACEHOLDER,
    MAX_INLINE_BODY_CHARS,
    curl_command,
    pretty_json,
    python_requests_call,
)

ENDPOINTS_PAGE = "views/endpoints.py"


def endpoints_link(endpoint: str, label: str | None = None) -> None:
    st.page_link(
        ENDPOINTS_PAGE,
        label=label or f"Manage {endpoint} on the Endpoints page",
        icon=":material/hub:",
        query_params={"endpoint": endpoint},
    )


def render_deployment_access(
    target: DeploymentTarget, endpoint_name: str, deployment_name: str
) -> None:
    """Everything a caller needs for `endpoint_name`/`deployment_name`, as the target has it
    now."""
    try:
        endpoint = target.get_endpoint(endpoint_name)
        deployment = target.get_deployment(deployment_name, endpoint_name)
    except (EndpointNotFoundError, DeploymentNotFoundError) as exc:
        st.info(f"{exc} It may have been deleted since.")
        return
    label = f"{endpoint.name}/{deployment.name}"
    if deployment.state is DeploymentState.FAILED:
        st.error(f"Deployment **{label}** failed: {deployment.reason}")
        if deployment.log_tail:
            with st.expander("Server log (last lines)", expanded=True, icon=":material/article:"):
                st.code(deployment.log_tail, language=None)
        endpoints_link(endpoint.name, "Restart or delete it on the Endpoints page")
        return
    if deployment.state is not DeploymentState.READY:
        st.info(f"Deployment **{label}** is {deployment.state.value}.")
        endpoints_link(endpoint.name)
        return
    share = endpoint.traffic.get(deployment.name, 0)
    st.success(
        f"**{label}** is ready: {deployment.model_uri} on the {deployment.runtime.value} runtime"
        + (f" with bundle {deployment.bundle}" if deployment.bundle else "")
        + f", {share}% of live traffic."
    )
    if endpoint.state is not DeploymentState.READY:
        st.warning(
            f"Endpoint {endpoint.name} is {endpoint.state.value}"
            f"{f' ({endpoint.reason})' if endpoint.reason else ''}: its scoring URI does not "
            "answer. Restart it on the Endpoints page."
        )
    st.markdown("**Scoring URI**")
    st.code(endpoint.scoring_uri or "(none yet)", language=None)
    _render_key(target, endpoint)
    inspection = _inspection(deployment)
    _render_test_call(target, endpoint, deployment, inspection)
    _render_snippets(endpoint, deployment, inspection)
    endpoints_link(endpoint.name)


def _render_key(target: DeploymentTarget, endpoint: Endpoint) -> None:
    if endpoint.auth_mode is not AuthMode.KEY:
        st.caption("This endpoint takes no key: any program on this machine can call it.")
        return
    if not target.supports(Capability.KEYS):
        st.caption("This target does not give out its endpoints' keys here.")
        return
    # Only the toggle's on/off state is kept; the key itself is read from the target when shown.
    shown = st.toggle(
        "Show the primary key",
        key=f"deploy_show_key__{endpoint.name}",
        **access.button_args(Action.SEE_KEYS),
    )
    # Checked again: a toggle left on stays on in the session after it is disabled.
    if shown and access.allowed(Action.SEE_KEYS):
        try:
            st.code(target.get_keys(endpoint.name).primary, language=None)
        except DeployStudioError as exc:
            st.error(str(exc))
        st.caption("Regenerate either key on the Endpoints page.")
    else:
        st.caption("Callers send it as `Authorization: Bearer <key>`. Hidden until you show it.")


def _inspection(deployment: Deployment) -> ModelInspection | None:
    try:
        return services.inspection(services.get_settings().registry_uri, deployment.model_uri)
    except DeployStudioError as exc:
        st.warning(f"The model's input example cannot be read: {exc}")
        return None


def _render_test_call(
    target: DeploymentTarget,
    endpoint: Endpoint,
    deployment: Deployment,
    inspection: ModelInspection | None,
) -> None:
    example = inspection.input_example if inspection else None
    params = inspection.input_example_params if inspection else None
    # Per server process: an answer from a server that has since been replaced is not shown.
    answer_key = f"deploy_answer__{endpoint.name}/{deployment.name}/{deployment.pid}"
    clicked = st.button(
        "Test call with the input example",
        icon=":material/send:",
        disabled=example is None,
        help=None
        if example is not None
        else "The model was logged without an input example: call it from the Endpoints page.",
        key=f"deploy_test__{endpoint.name}/{deployment.name}",
    )
    if clicked and example is not None:
        st.session_state.pop(answer_key, None)
        try:
            with st.spinner("Calling the endpoint…"):
                # Addressed to this deployment by header, so it answers whatever the traffic.
                st.session_state[answer_key] = target.predict(
                    deployment.name, inputs=example, endpoint=endpoint.name, params=params
                )
        except DeployStudioError as exc:
            st.error(str(exc))
    if answer_key in st.session_state:
        st.caption(
            f"Answered by deployment **{deployment.name}** (sent through the scoring URI with "
            f"the `{DEPLOYMENT_HEADER}: {deployment.name}` header and the primary key)."
        )
        st.json(st.session_state[answer_key], expanded=2)


def _render_snippets(
    endpoint: Endpoint, deployment: Deployment, inspection: ModelInspection | None
) -> None:
    if endpoint.scoring_uri is None:
        return
    with st.expander("Call it from your code", icon=":material/code:"):
        if inspection is None or inspection.input_example is None:
            st.caption(
                "The model has no input example to fill the body with: the Predict page "
                "writes a body from any input."
            )
            return
        try:
            body = request_body(
                inspection.input_example, inspection.input_example_params, deployment.runtime
            ).decode("utf-8")
        except DeployStudioError as exc:
            st.warning(f"No request body can be written from the input example: {exc}")
            return
        headers = {}
        if endpoint.auth_mode is AuthMode.KEY:
            headers["Authorization"] = f"Bearer {KEY_PLACEHOLDER}"
        direct = endpoint.traffic.get(deployment.name, 0) == 0
        if direct:
            headers[DEPLOYMENT_HEADER] = deployment.name
        inline = len(body) <= MAX_INLINE_BODY_CHARS
        notes = []
        if endpoint.auth_mode is AuthMode.KEY:
            notes.append(f"Replace `{KEY_PLACEHOLDER}` with the key above.")
        if direct:
            notes.append(
                f"The `{DEPLOYMENT_HEADER}` header reaches {deployment.name} while it has no "
                "live traffic; without it, the endpoint's traffic decides."
            )
        if not inline:
            notes.append(f"The body is long: save it as `{BODY_FILE}` beside the call.")
        st.caption(" ".join(notes))
        curl_tab, python_tab, body_tab = st.tabs(["curl", "Python", "Body"])
        curl_tab.code(
            curl_command(endpoint.scoring_uri, headers, body, inline),
            language="bash",
            wrap_lines=True,
        )
        python_tab.code(
            python_requests_call(endpoint.scoring_uri, headers, body, inline),
            language="python",
            wrap_lines=True,
        )
        body_tab.code(pretty_json(body), language="json")
        if not inline:
            body_tab.download_button(
                f"Download {BODY_FILE}",
                body,
                file_name=BODY_FILE,
                mime="application/json",
                on_click="ignore",
                key=f"deploy_body__{endpoint.name}/{deployment.name}",
            )
