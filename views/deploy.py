"""Deploy: a registered model version (optionally with a scoring bundle) to a new or existing
local endpoint, in one operation followed live; then how to call it.

The address holds the page's state: ?model=&version= the model, &endpoint=&deployment= the
deployment shown below the form (set when a deploy starts), so the result can be shared too.
"""

import streamlit as st

from components import access, services
from components.deploy_form import (
    build_request,
    render_model_choice,
    render_what,
    render_where,
    show_existing_endpoint,
)
from components.endpoint_access import render_deployment_access
from components.operation_status import current_operation, follow_operation, start_operation
from deploystudio.access import Action
from deploystudio.deployment.deploy_request import deploy, request_problems
from deploystudio.errors import DeployStudioError

OPERATION_SLOT = "deploy_operation"
# The last finished operation the form has followed to its endpoint.
SYNCED_KEY = "deploy_synced_operation"

st.title("Deploy a model")
local = services.local_endpoints()
target = local.target

st.markdown("#### What")
choice = render_model_choice("deploy")
what = render_what(choice)

st.markdown("#### Where")
try:
    endpoints, deployments = target.list_endpoints(), target.list_deployments()
except DeployStudioError as exc:
    st.error(str(exc))
    st.stop()
last = current_operation(OPERATION_SLOT)
if last is not None and last.done and st.session_state.get(SYNCED_KEY) != last.id:
    st.session_state[SYNCED_KEY] = last.id
    deployed_to = st.query_params.get("endpoint")
    if any(e.name == deployed_to for e in endpoints):
        show_existing_endpoint(deployed_to)
where = render_where(choice.name, endpoints, deployments)
request = build_request(choice, what, where)
problems = request_problems(request, endpoints, deployments)
for problem in problems:
    st.error(problem)

busy = last is not None and not last.done
clicked = st.button(
    "Deploy",
    type="primary",
    icon=":material/rocket_launch:",
    key="deploy_submit",
    **access.button_args(Action.DEPLOY, disabled=bool(problems) or busy),
)
# Checked again here: a disabled button can still arrive clicked from an older page.
if clicked and not problems and not busy:
    started = start_operation(
        OPERATION_SLOT,
        request.subject,
        f"Deploy {choice.name} version {choice.version.version} to "
        f"{request.endpoint}/{request.deployment}",
        lambda progress: deploy(target, request, progress),
        action=Action.DEPLOY,
    )
    if started is not None:
        st.query_params["endpoint"] = request.endpoint
        st.query_params["deployment"] = request.deployment

operation = follow_operation(OPERATION_SLOT)

shown_endpoint = st.query_params.get("endpoint")
shown_deployment = st.query_params.get("deployment")
if shown_endpoint and shown_deployment and (operation is None or operation.done):
    st.divider()
    st.markdown(f"#### {shown_endpoint} / {shown_deployment}")
    render_deployment_access(target, shown_endpoint, shown_deployment)
