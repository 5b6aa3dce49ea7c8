"""Predict: preview one model version on its example, a form, an uploaded file or a JSON body."""

import time
from pathlib import Path

import streamlit as st

from components import services
from components.environment_choice import environment_status, render_env_mode
from components.input_sources import render_input_sources
from components.model_address import model_uri_input, query_params_for
from components.payload_editor import (
    editor_key,
)
from components.prediction_results import (
    PreviewResult,
    render_environment_problems,
    render_result,
    render_snippets,
    render_timing,
)
from deploystudio.environments.choice import Chosen, choose
from deploystudio.environments.diagnosis import explained
from deploystudio.errors import DeployStudioError


def choose_environment(mode: str, model_path: Path, home: Path) -> Chosen:
    """The environment, with a build's progress in a status box (it takes a minute or more the
    first time; a built one is found at once)."""
    with environment_status(mode) as progress:
        return choose(mode, model_path, home, progress=progress)


st.title("Preview predictions")
settings = services.get_settings()
entered = model_uri_input(
    "Open a version from Browse models or Inspect, or enter a model URI above."
)

try:
    with st.spinner("Reading the model and fetching its files…"):
        inspection = services.inspection(settings.registry_uri, entered)
        if not inspection.has_pyfunc:
            st.error(
                "This model has no python_function flavor, so MLflow cannot load it generically "
                "to preview it. Re-log it with a pyfunc flavor (Customize can wrap it)."
            )
            st.stop()
        model_path = services.model_path(settings.registry_uri, inspection.resolved_uri)
        signature = services.model_signature(str(model_path))
except DeployStudioError as exc:
    st.error(str(exc))
    st.stop()

version = inspection.version
if version is not None:
    st.subheader(f"{version.name} · version {version.version}")
    registered_by = version.user_id or (inspection.run.user_id if inspection.run else None)
    origin = f"Registered by {registered_by or 'an unknown user'}."
    file_stem = f"{version.name}-v{version.version}"
else:
    st.subheader(inspection.resolved_uri)
    origin = "Not a registered version: nobody vouched for it in the registry."
    file_stem = "model"
st.caption(
    f"{origin} Loading a model runs code from its artifacts (pickles, custom Python): preview "
    "models from people you trust. It runs in a separate worker process, without this app's "
    "credentials."
)
inspect_link, deploy_link = st.columns(2)
inspect_link.page_link(
    "views/inspect.py",
    label="Inspect this model",
    icon=":material/search:",
    query_params=query_params_for(entered),
)
if version is not None:  # the Deploy page deploys registered versions
    deploy_link.page_link(
        "views/deploy.py",
        label="Deploy to an endpoint",
        icon=":material/rocket_launch:",
        query_params={"model": version.name, "version": version.version},
    )

# Keys per model: what the user typed stays through reruns and errors, and never leaks into
# another model's editor.
key = editor_key(inspection.resolved_uri)
st.markdown("#### Input")
source, builder = render_input_sources(inspection, signature, model_path, key)

env_mode = render_env_mode(f"{key}_env")
button_column, hint_column = st.columns([1, 5], vertical_alignment="center")
clicked = button_column.button(
    "Predict", type="primary", icon=":material/play_arrow:", key=f"{key}_predict"
)
hint_column.caption(f"Sends the input of the **{source}** tab to the model.")

result_key = f"{key}_result"
environment_key = f"{key}_environment_reason"
main_column, side_column = st.columns([3, 1])
with main_column:
    if clicked:
        st.session_state.pop(result_key, None)
        st.session_state.pop(environment_key, None)
        if builder is None:
            st.warning(
                f"The {source} tab has no input to send: fill it in, or fix the problem it shows."
            )
        else:
            model_input = None
            try:
                model_input = builder()
                started = time.monotonic()
                chosen = choose_environment(env_mode, model_path, settings.home)
                st.session_state[environment_key] = chosen.reason
                with st.spinner("Predicting in the model's worker (the first call loads it)…"):
                    worker = services.worker_for(chosen)
                    try:
                        prediction = worker.predict(model_path, model_input)
                    except DeployStudioError as exc:
                        raise explained(exc, chosen.environment is None, model_path) from exc
                st.session_state[result_key] = PreviewResult(
                    entered, source, model_input, prediction, time.monotonic() - started
                )
            except DeployStudioError as exc:
                for warning in model_input.warnings if model_input else []:
                    st.warning(warning)
                st.error(str(exc))
            except (ValueError, TypeError) as exc:  # a value no payload check foresaw
                st.error(f"The input could not be sent to the model: {exc}")
    result: PreviewResult | None = st.session_state.get(result_key)
    if st.session_state.get(environment_key):
        st.caption(f":material/deployed_code: {st.session_state[environment_key]}")
    if result is not None:
        for warning in result.prediction.warnings:
            st.warning(warning)
        render_result(result, file_stem)
with side_column:
    if result is not None:
        render_timing(result.prediction, result.waited_seconds)
    render_environment_problems(inspection.report)

if result is not None:
    with st.expander("Request snippets", icon=":material/code:"):
        render_snippets(result.model_input, file_stem)
