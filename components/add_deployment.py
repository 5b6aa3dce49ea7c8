"""Add a deployment to an existing endpoint from the Endpoints page: model version (and scoring
bundle), runtime and instance count from the Deploy page's own form parts, a deployment name,
then one endpoint change (followed live at the top of the page, like every other change).

It goes through the same `deploy` as the Deploy page, over the `DeploymentTarget` interface;
the new deployment starts with 0% of live traffic unless the endpoint has none to share.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from components import access, endpoint_changes
from components.deploy_form import render_model_choice, render_what
from deploystudio.access import Action
from deploystudio.deployment.base import Deployment, DeploymentTarget, Endpoint
from deploystudio.deployment.deploy_request import (
    DeployRequest,
    deploy,
    free_deployment_name,
    request_problems,
)
from deploystudio.deployment.names import NAME_RULE

# The expander's state is in the address (?add=true), so the open form can be linked to.
EXPANDER_KEY = "add"


def render_add_deployment(
    target: DeploymentTarget, endpoint: Endpoint, deployments: Sequence[Deployment]
) -> None:
    """An "Add a deployment" expander; its form is drawn (and the registry read) only when
    open. Call it last on the panel: until a model is chosen it stops the page."""
    expander = st.expander(
        "Add a deployment",
        icon=":material/add_circle:",
        key=EXPANDER_KEY,
        on_change="rerun",
        bind="query-params",
    )
    if not expander.open:
        return
    with expander:
        choice = render_model_choice("endpoints")
        what = render_what(choice)
        free = free_deployment_name(d.name for d in deployments)
        name = st.text_input(
            "Deployment name",
            value=free,
            help=f"Deployment {NAME_RULE}.",
            # Keyed by the free name too: once a deployment took it, the box offers the next.
            key=f"add_deployment_name__{endpoint.name.lower()}__{free}",
        ).strip()
        # Nothing to share yet: the first deployment of an endpoint takes all its traffic.
        all_traffic = not any(endpoint.traffic.values())
        request = DeployRequest(
            model_uri=choice.uri,
            endpoint=endpoint.name,
            deployment=name,
            new_endpoint=False,
            runtime=what.runtime,
            bundle=what.bundle,
            instance_count=what.instance_count,
            all_traffic=all_traffic,
        )
        problems = request_problems(request, [endpoint], deployments)
        for problem in problems:
            st.error(problem)
        st.caption(
            "It gets all live traffic once ready: the endpoint has none to share."
            if all_traffic
            else "It starts with 0% of live traffic: test it from Invoke, then move traffic "
            "with the safe rollout."
        )
        busy = bool(endpoint_changes.running(endpoint.name))
        if st.button(
            "Add deployment",
            type="primary",
            icon=":material/rocket_launch:",
            key=f"add_deployment__{endpoint.name}",
            **access.button_args(Action.DEPLOY, disabled=bool(problems) or busy),
        ) and not problems:
            endpoint_changes.submit(
                endpoint.name,
                f"Add {name} ({choice.name} version {choice.version.version}) to "
                f"{endpoint.name}",
                lambda progress: deploy(target, request, progress),
                action=Action.DEPLOY,
            )
