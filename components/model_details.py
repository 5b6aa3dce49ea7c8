"""Flavors, input example, environment and source run of an inspected model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from deploystudio.environment_report import EnvironmentFiles
from deploystudio.inspection import FlavorInfo
from deploystudio.registry import RunSummary
from deploystudio.times import format_time

EXAMPLE_PREVIEW_ROWS = 50
IMAGE_PREVIEW_ITEMS = 3


def render_flavors(flavors: list[FlavorInfo]) -> None:
    for flavor in flavors:
        with st.container(border=True):
            badges = [f":blue-badge[{flavor.name}]"]
            if flavor.framework_version:
                badges.append(f":gray-badge[version {flavor.framework_version}]")
            if flavor.serialization_format:
                badges.append(f":orange-badge[{flavor.serialization_format}]")
            if flavor.python_version:
                badges.append(f":green-badge[Python {flavor.python_version}]")
            st.markdown(" ".join(badges))
            if flavor.loader_module:
                st.caption(f"Loader module: `{flavor.loader_module}`")
            st.json(flavor.details, expanded=False)


def render_input_example(example: object, params: dict | None, error: str | None) -> None:
    if error:
        st.warning(error)
    if example is None:
        if not error:
            st.info("No input example was logged with this model.")
        return
    if isinstance(example, pd.DataFrame):
        st.caption(f"{len(example)} row(s) × {example.shape[1]} column(s)")
        st.dataframe(example.head(EXAMPLE_PREVIEW_ROWS), hide_index=True)
    elif isinstance(example, np.ndarray):
        _render_tensor("input", example)
    elif isinstance(example, dict):
        for name, value in example.items():
            _render_tensor(str(name), np.asarray(value))
    else:
        st.write(example)
    if params:
        st.markdown("**Params in the example**")
        st.json(params)


def _render_tensor(name: str, tensor: np.ndarray) -> None:
    st.caption(f"Tensor `{name}`: shape {tensor.shape}, dtype {tensor.dtype}")
    if tensor.ndim >= 3:
        # Items of 2-D (or more) are images or grids: drawn, they are read at a glance.
        items = tensor[:IMAGE_PREVIEW_ITEMS].reshape(
            min(len(tensor), IMAGE_PREVIEW_ITEMS), tensor.shape[1], -1
        )
        figure = px.imshow(items, facet_col=0, color_continuous_scale="gray_r", aspect="equal")
        figure.for_each_annotation(lambda a: a.update(text=f"item {a.text.split('=')[-1]}"))
        st.plotly_chart(figure, width="stretch")
        with st.expander("Values of the first item"):
            st.dataframe(pd.DataFrame(items[0]))
    elif tensor.ndim == 2:
        st.dataframe(pd.DataFrame(tensor[:EXAMPLE_PREVIEW_ROWS]))
    else:
        st.write(tensor[:EXAMPLE_PREVIEW_ROWS].tolist())


def requirements_frame(environment: EnvironmentFiles) -> pd.DataFrame:
    rows = []
    for r in environment.requirements:
        if r.pinned_version is None:
            match = "not pinned"
        elif r.installed_version is None:
            match = "not installed here"
        else:
            match = "same" if r.installed_version == r.pinned_version else "differs"
        rows.append((r.name, r.line, r.installed_version or "—", match))
    return pd.DataFrame(rows, columns=["package", "model requires", "installed here", "match"])


def render_environment(environment: EnvironmentFiles) -> None:
    if environment.model_python_version:
        st.caption(f"Model's Python: {environment.model_python_version}")
    if environment.requirements:
        st.table(requirements_frame(environment), hide_index=True)
    files = (
        ("requirements.txt", environment.requirements_txt, "text"),
        ("conda.yaml", environment.conda_yaml, "yaml"),
        ("python_env.yaml", environment.python_env_yaml, "yaml"),
    )
    for name, text, language in files:
        st.markdown(f"**{name}**")
        if text is None:
            st.caption(f"The model has no {name}.")
        else:
            st.code(text, language=language)


def render_run(run: RunSummary | None, run_id: str | None) -> None:
    if run is None:
        st.info(
            f"The source run {run_id} is not in this tracking store."
            if run_id
            else "This model version has no source run."
        )
        return
    started = format_time(run.started) if run.started else "unknown"
    st.caption(
        f"Run `{run.run_id}` ({run.run_name or 'unnamed'}), {run.status.lower()}, "
        f"started {started} by {run.user_id or 'unknown'}"
    )
    for column, (title, values) in zip(
        st.columns(2), (("Params", run.params), ("Metrics", run.metrics)), strict=True
    ):
        with column:
            st.markdown(f"**{title}**")
            if values:
                st.table(pd.Series(values, name="value").sort_index().to_frame())
            else:
                st.caption(f"No {title.lower()} logged.")
