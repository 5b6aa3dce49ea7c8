"""Customize, way A: wrap a version, compare its predictions with the original's, register it.

Building runs in the prediction worker (it loads the model's pickles and the user's code);
registering runs here and only uploads the folder the worker saved.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from components import access, services
from components.model_address import query_params_for
from components.wrap_options import KIND_HELP, KIND_LABELS, render_wrap_options
from deploystudio.access import Action
from deploystudio.customization.wrap_registration import (
    RegisteredWrap,
    identical_versions,
    register_wrapped_model,
)
from deploystudio.customization.wrapping import (
    WrapperKind,
    WrapPreview,
    WrapSpec,
    available_kinds,
    build_wrapped_model,
)
from deploystudio.errors import DeployStudioError
from deploystudio.inspection import ModelInspection
from deploystudio.worker.sandbox import Access

BUILD_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class BuiltWrap:
    """The last wrapper built for one model in this session, and the options it was built with."""

    source_uri: str
    spec: WrapSpec
    preview: WrapPreview
    # What the user waited, worker start included; preview.seconds is the build alone.
    waited_seconds: float


def build_label(waited_seconds: float, building_seconds: float) -> str:
    """ "Built in 31.7 s (4.6 s building and comparing, 27.1 s starting the worker…)": the
    time the user waited first, then where it went."""
    other = max(waited_seconds - building_seconds, 0.0)
    return (
        f"Built in {waited_seconds:.1f} s ({building_seconds:.1f} s building and comparing, "
        f"{other:.1f} s starting the worker and passing the model to it)"
    )


def side_by_side(preview: WrapPreview) -> pd.DataFrame:
    """Input, original and wrapped predictions in one table, one row per input row."""
    parts = []
    if isinstance(preview.example, pd.DataFrame):
        parts.append(preview.example.reset_index(drop=True).add_prefix("input: "))
    parts.append(preview.original.add_prefix("original: "))
    parts.append(preview.wrapped.add_prefix("wrapped: "))
    return pd.concat(parts, axis=1)


def default_target_name(inspection: ModelInspection) -> str:
    return inspection.version.name if inspection.version else "wrapped-model"


def render_wrap_panel(inspection: ModelInspection, model_path: Path, key: str) -> None:
    kinds = available_kinds(model_path)
    kind = st.radio(
        "Wrapper",
        list(WrapperKind),
        format_func=KIND_LABELS.__getitem__,
        captions=[kinds[k] or KIND_HELP[k] for k in WrapperKind],
        key=f"{key}_kind",
    )
    reason = kinds[kind]
    if reason is not None:
        st.warning(f"{KIND_LABELS[kind]} does not apply to this model: {reason}")
        return
    columns = (
        [f.name for f in inspection.signature.inputs if f.name] if inspection.signature else []
    )
    spec = render_wrap_options(kind, columns, f"{key}_{kind.value}")

    built_key = f"{key}_built"
    if st.button("Build and compare", icon=":material/build:", key=f"{key}_build"):
        st.session_state.pop(built_key, None)
        try:
            with st.status("Building the wrapped model in the worker…", expanded=False) as status:
                started = time.monotonic()
                work_dir = services.customize_work_dir()
                preview = services.prediction_worker().call(
                    build_wrapped_model,
                    model_path,
                    spec,
                    work_dir,
                    timeout_seconds=BUILD_TIMEOUT_SECONDS,
                    # Behind the sandbox: the source model to read, the work folder to save in.
                    access=Access.of(read=[model_path], write=[work_dir]),
                )
                waited = time.monotonic() - started
                status.update(label=build_label(waited, preview.seconds), state="complete")
            st.session_state[built_key] = BuiltWrap(inspection.resolved_uri, spec, preview, waited)
        except DeployStudioError as exc:
            st.error(str(exc))

    built: BuiltWrap | None = st.session_state.get(built_key)
    if built is None:
        st.caption("Build the wrapper to compare its predictions with the original's.")
        return
    st.markdown("#### Original and wrapped, on the input example")
    st.caption(build_label(built.waited_seconds, built.preview.seconds))
    st.dataframe(side_by_side(built.preview), hide_index=True)
    with st.expander("The new version's signature", icon=":material/schema:"):
        st.json(built.preview.signature)
    if built.spec != spec:
        st.info("The options changed since this build: build again to register the new ones.")
        return
    _render_register(inspection, built, key)


def _render_register(inspection: ModelInspection, built: BuiltWrap, key: str) -> None:
    st.markdown("#### Register")
    target = st.text_input(
        "Register as (an existing model gets a new version; a new name creates the model)",
        value=default_target_name(inspection),
        key=f"{key}_target",
    ).strip()
    registered_key = f"{key}_registered"
    try:
        copies = (
            identical_versions(services.registry(), target, built.source_uri, built.spec)
            if target
            else []
        )
    except DeployStudioError as exc:
        st.error(str(exc))
        return
    confirmed = True
    if copies:
        listed = ", ".join(copies)
        st.info(
            f"{target} already has this wrapper (the same source and options) as version "
            f"{listed}: registering again only adds an identical copy.",
            icon=":material/content_copy:",
        )
        confirmed = st.checkbox(
            "Register another identical version anyway",
            value=False,
            key=f"{key}_register_copy__{target}__{listed}",
        )
    if st.button(
        "Register new version",
        type="primary",
        key=f"{key}_register",
        **access.button_args(Action.CUSTOMIZE, disabled=not target or not confirmed),
    ) and access.permitted(Action.CUSTOMIZE) and target and confirmed:  # fmt: skip
        st.session_state.pop(registered_key, None)
        try:
            with st.status("Registering the wrapped model…", expanded=True) as status:
                st.session_state[registered_key] = register_wrapped_model(
                    services.get_settings(),
                    services.registry(),
                    built.preview,
                    built.source_uri,
                    built.spec,
                    target,
                    progress=status.write,
                    registered_by=services.current_actor(),
                )
                status.update(label="Registered", state="complete", expanded=False)
        except DeployStudioError as exc:
            st.error(f"Nothing was registered. {exc}")
        else:
            services.refresh_registry_listings()
            # Drawn again from the registry: the button now sees the version just made.
            st.rerun()
        services.refresh_registry_listings()
    registered: RegisteredWrap | None = st.session_state.get(registered_key)
    if registered is not None:
        _render_registered(registered)


def _render_registered(registered: RegisteredWrap) -> None:
    st.success(f"Registered **{registered.name}** version **{registered.version}**.")
    links = st.columns(3)
    address = query_params_for(registered.model_uri)
    links[0].page_link(
        "views/inspect.py",
        label="Inspect the new version",
        icon=":material/search:",
        query_params=address,
    )
    links[1].page_link(
        "views/predict.py", label="Preview it", icon=":material/play_arrow:", query_params=address
    )
    links[2].page_link(
        "views/browse.py",
        label=f"All versions of {registered.name}",
        icon=":material/list:",
        query_params={"model": registered.name},
    )
