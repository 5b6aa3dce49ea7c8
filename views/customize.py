"""Customize inference, the two ways Azure ML documents for MLflow models: wrap and re-log the
model as a new version, or deploy it with a scoring script and an environment."""

import hashlib

import streamlit as st

from components import services
from components.model_address import model_uri_input, query_params_for
from components.script_panel import render_script_panel
from components.wrap_panel import render_wrap_panel
from deploystudio.errors import DeployStudioError

st.title("Customize inference")
settings = services.get_settings()
entered = model_uri_input("Open a version from Browse models or Inspect, or enter a model URI.")

try:
    with st.spinner("Reading the model and fetching its files…"):
        inspection = services.inspection(settings.registry_uri, entered)
        model_path = services.model_path(settings.registry_uri, inspection.resolved_uri)
except DeployStudioError as exc:
    st.error(str(exc))
    st.stop()

version = inspection.version
st.subheader(f"{version.name} · version {version.version}" if version else inspection.resolved_uri)
st.page_link(
    "views/inspect.py",
    label="Inspect this model",
    icon=":material/search:",
    query_params=query_params_for(entered),
)

# Widget keys per model: one model's options and script never show up in another's.
key = "customize_" + hashlib.sha256(inspection.resolved_uri.encode()).hexdigest()[:12]
wrap_tab, script_tab = st.tabs(["Wrap and re-log", "Scoring script and environment"])
with wrap_tab:
    st.caption(
        "Change how the model is logged: the wrapper becomes a new registered version that "
        "serves without code. Building runs the model in the worker process, not in this app."
    )
    render_wrap_panel(inspection, model_path, f"{key}_wrap")
with script_tab:
    st.caption(
        "Keep the model as it is and deploy it with a `score.py` (Azure ML's init()/run() "
        "contract) and an environment. Validation serves it in the real Azure ML inference "
        "server on 127.0.0.1."
    )
    render_script_panel(inspection, model_path, f"{key}_script")
