"""Endpoints: the online endpoints of a target (local, or the Azure ML workspace the Azure
settings name, picked at the top), their deployments, traffic, safe rollout, metrics, calls,
keys and history, through the deployment target interface: a panel a target does not support
says so. Everything shown is read from the target on each run; changes run as operations (one
at a time per endpoint). Addressed as ?endpoint=NAME&tab=TAB."""

import streamlit as st

from components import access, endpoint_changes
from components.add_deployment import render_add_deployment
from components.deployment_list import render_deployments
from components.endpoint_invoke import render_invoke
from components.endpoint_keys import render_keys
from components.endpoint_metrics import render_metrics
from components.endpoint_tables import endpoints_frame, history_frame
from components.rollout_panel import render_rollout
from components.target_picker import render_target_picker
from components.traffic_editor import render_traffic_editor
from deploystudio.access import Action
from deploystudio.deployment.base import Capability, DeploymentState
from deploystudio.errors import DeployStudioError, EndpointNotFoundError

TABS = ("Deployments", "Traffic", "Safe rollout", "Metrics", "Invoke", "Keys", "History")

st.title("Endpoints")
try:
    target, target_name = render_target_picker()
    endpoints = target.list_endpoints()
except DeployStudioError as exc:  # e.g. Azure cannot be reached or refuses the credential
    st.error(f"The endpoints cannot be listed: {exc}")
    st.stop()
if not endpoints:
    st.info(
        f"No {target_name} yet. Deploy a model version to create one, or run "
        "`deploystudio endpoint create NAME`."
    )
    st.page_link("views/deploy.py", label="Deploy a model", icon=":material/rocket_launch:")
    st.stop()

# The overview is drawn here but filled once this session's change has been followed: read
# before it, it showed the traffic from before a change that had finished a moment later.
overview = st.container()
names = [e.name for e in endpoints]
chosen = st.selectbox("Endpoint", names, key="endpoint", bind="query-params")
endpoint_changes.follow(chosen)
overview.dataframe(endpoints_frame(target.list_endpoints()), hide_index=True, key="endpoints_table")
try:
    endpoint = target.get_endpoint(chosen)
except EndpointNotFoundError as exc:  # deleted since the list was read
    st.error(str(exc))
    st.stop()
deployments = target.list_deployments(endpoint.name)

st.subheader(endpoint.name)
state_line = f"State **{endpoint.state.value}** · auth **{endpoint.auth_mode.value}**"
if endpoint.description:
    state_line += f" · {endpoint.description}"
st.markdown(state_line)
if endpoint.state is DeploymentState.FAILED and endpoint.reason:
    st.error(endpoint.reason)
if endpoint.scoring_uri:
    st.code(endpoint.scoring_uri, language=None)

tabs = st.tabs(list(TABS), key="tab", bind="query-params")
panels = dict(zip(TABS, tabs, strict=True))
try:
    with panels["Deployments"]:
        if panels["Deployments"].open:
            render_deployments(endpoint, deployments)
            with st.popover("Delete the endpoint", icon=":material/delete_forever:"):
                st.caption(
                    f"Stops its {len(deployments)} deployment(s) and its front, then deletes "
                    "its records; the scoring URI stops answering."
                )
                typed = st.text_input(
                    f"Type {endpoint.name} to confirm", key=f"delete_{endpoint.name}_confirm"
                )
                if st.button(
                    "Delete",
                    type="primary",
                    key=f"delete_{endpoint.name}",
                    **access.button_args(Action.CHANGE_ENDPOINT, disabled=typed != endpoint.name),
                ):
                    endpoint_changes.submit(
                        endpoint.name,
                        f"Delete endpoint {endpoint.name}",
                        lambda progress: target.delete_endpoint(endpoint.name, progress=progress),
                    )
            # Last on the panel: its model choice stops the page until a model is chosen.
            render_add_deployment(target, endpoint, deployments)
    with panels["Traffic"]:
        if panels["Traffic"].open:
            render_traffic_editor(endpoint)
    with panels["Safe rollout"]:
        if panels["Safe rollout"].open:
            render_rollout(endpoint, deployments)
    with panels["Metrics"]:
        if panels["Metrics"].open:
            render_metrics(endpoint.name)
    with panels["Invoke"]:
        if panels["Invoke"].open:
            render_invoke(endpoint, deployments)
    with panels["Keys"]:
        if panels["Keys"].open:
            render_keys(endpoint)
    with panels["History"]:
        if panels["History"].open and target.supports(Capability.HISTORY):
            st.dataframe(
                history_frame(target.history(endpoint.name)),
                hide_index=True,
                key="endpoint_history",
            )
        elif panels["History"].open:
            st.info("This target keeps no history of its endpoints here.")
except DeployStudioError as exc:  # e.g. the endpoint was deleted while this page ran
    st.error(str(exc))
