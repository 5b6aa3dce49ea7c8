"""The Inspect page's environment plan: what would be installed for the model, and why."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from deploystudio.config import Settings
from deploystudio.environments import EnvironmentPlan, environments_root, lookup_key
from deploystudio.environments.model_inputs import inputs_from_inspection
from deploystudio.environments.plan import cached_plan, plan_environment
from deploystudio.environments.sources import check_lines, requirement_lines
from deploystudio.errors import DeployStudioError
from deploystudio.inspection import ModelInspection


def plan_frame(plan: EnvironmentPlan) -> pd.DataFrame:
    rows = [
        (
            r.name,
            r.asked or "any",
            r.chosen or "—",
            r.saved_with or "—",
            r.choice.value,
            r.reason,
        )
        for r in plan.requirements
    ]
    columns = ["package", "asked", "chosen", "MLmodel says", "choice", "why"]
    return pd.DataFrame(rows, columns=columns)


def render_environment_plan(inspection: ModelInspection, settings: Settings) -> None:
    st.markdown("#### Environment plan")
    root = environments_root(settings.home)
    try:
        inputs = inputs_from_inspection(inspection)
        check_lines(requirement_lines(inputs)[1])  # refused lines: said at once, without uv
    except DeployStudioError as exc:
        st.error(str(exc))
        return
    plan = cached_plan(root, inputs)
    if plan is None:
        st.caption(
            "Which versions would be installed in the model's own environment, and why. "
            "Planning asks the package index (a few seconds)."
        )
        if not st.button("Plan the environment", key="environment_plan", icon=":material/list:"):
            return
        try:
            with st.spinner("Asking the package index with uv…"):
                plan = plan_environment(inputs, root)
        except DeployStudioError as exc:
            st.error(str(exc))
            return
    python = plan.python
    asked = f"{python.asked} ({python.asked_in})" if python.asked else "not stated"
    line = f"Python asked: {asked} · used: {python.used} (`{python.path}`)"
    if python.match in ("exact", "not-asked"):
        st.caption(line)
    else:
        st.warning(f"{line}. {python.note}")
    st.caption(f"Requirements from {plan.source or 'no file'} · packages from {plan.index}")
    if plan.requirements:
        st.dataframe(plan_frame(plan), hide_index=True)
    for blocker in plan.blockers:
        st.error(blocker)
    for note in plan.notes:
        st.info(note)
    if plan.key is None:
        st.caption("It cannot be built here; the app's own environment can still run it.")
    elif lookup_key(settings.home, plan.key) is not None:
        st.success(f"Environment `{plan.key}` is built ({len(plan.locked)} packages).")
    else:
        st.caption(
            f"Not built yet: {len(plan.locked)} packages in all. "
            f"`deploystudio env build {plan.model_uri}` builds it."
        )
