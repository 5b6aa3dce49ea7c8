"""A preview's result: the table with its download, the timing, the chart, the request snippets."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from components.prediction_chart import prediction_figure, results_frame
from deploystudio.checks import Check, CheckStatus
from deploystudio.errors import DeployStudioError
from deploystudio.payload_formats import ModelInput
from deploystudio.prediction import Prediction
from deploystudio.snippets import BODY_FILE, request_snippets

# Report checks that say whether the model loads and predicts the same here as where it was saved.
ENVIRONMENT_CHECK_PREFIXES = ("Package", "Saved with", "Python version", "MLflow version")


@dataclass(frozen=True)
class PreviewResult:
    """The last preview of one model in this session (a view, not a record: nothing to keep)."""

    uri: str
    source: str
    model_input: ModelInput
    prediction: Prediction
    # What the user waited for the answer: worker start and transfer included, which the
    # prediction's own load and predict times leave out.
    waited_seconds: float | None = None


def environment_problems(checks: list[Check]) -> list[Check]:
    """Report checks about packages and Python that did not pass: why a preview may fail to
    load the model, or differ from the served model."""
    return [
        c
        for c in checks
        if c.status is not CheckStatus.PASS and c.name.startswith(ENVIRONMENT_CHECK_PREFIXES)
    ]


def format_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def render_timing(prediction: Prediction, waited_seconds: float | None = None) -> None:
    """The wait first (what the user sat through), then the parts the worker measured."""
    load = "from cache" if prediction.from_cache else format_seconds(prediction.load_seconds)
    if waited_seconds is not None:
        st.metric("Waited", format_seconds(waited_seconds))
    st.metric("Model load", load)
    st.metric("Predict", format_seconds(prediction.predict_seconds))
    if waited_seconds is not None:
        other = waited_seconds - prediction.load_seconds - prediction.predict_seconds
        st.caption(
            f"The other {format_seconds(max(other, 0.0))} went to starting the worker and "
            "passing the input and predictions between it and this app."
        )


def render_environment_problems(checks: list[Check]) -> None:
    problems = environment_problems(checks)
    if not problems:
        return
    st.warning(
        "**This machine differs from the model's environment**, so the preview may fail to "
        "load the model or predict differently from a served endpoint:\n\n"
        + "\n".join(f"- **{c.name}**: {c.detail}" for c in problems)
    )


def render_result(result: PreviewResult, file_stem: str) -> None:
    prediction = result.prediction
    table = results_frame(result.model_input, prediction.output)
    joined = len(table.columns) > len(prediction.output.columns)
    st.caption(
        f"{len(prediction.output)} prediction(s) for the input of the {result.source} tab"
        + (" · inputs and predictions side by side" if joined else "")
    )
    st.dataframe(table, hide_index=True, key="predict_results_table")
    st.download_button(
        "Download predictions (CSV)",
        table.to_csv(index=False),
        file_name=f"{file_stem}-predictions.csv",
        mime="text/csv",
        icon=":material/download:",
        on_click="ignore",
    )
    figure = prediction_figure(prediction.output)
    if figure is not None:
        st.plotly_chart(figure, width="stretch")


def render_snippets(model_input: ModelInput, file_stem: str) -> None:
    try:
        snippets = request_snippets(model_input)
    except DeployStudioError as exc:
        st.info(f"No request can be written for this input: {exc}")
        return
    st.caption(
        "The input of the last preview as request bodies, and calls that send it. Replace PORT, "
        "<KEY>, <endpoint>, <region> and <deployment> with your endpoint's values."
    )
    tabs = st.tabs(
        [
            "Azure ML body",
            "MLflow body",
            "curl · local",
            "Python · local",
            "curl · Azure",
            "Python · Azure",
        ]
    )
    with tabs[0]:
        st.caption("What Azure ML endpoints and the local `/score` servers take (`input_data`).")
        st.code(snippets.azure_body, language="json")
        st.download_button(
            f"Download {BODY_FILE}",
            snippets.azure_body,
            file_name=BODY_FILE,
            mime="application/json",
            on_click="ignore",
            key="predict_download_azure_body",
        )
    with tabs[1]:
        st.caption(
            f"What MLflow's scoring server takes on `/invocations` "
            f"(`{snippets.mlflow_format.value}`)."
        )
        st.code(snippets.mlflow_body, language="json")
        st.download_button(
            f"Download {file_stem}-mlflow.json",
            snippets.mlflow_body,
            file_name=f"{file_stem}-mlflow.json",
            mime="application/json",
            on_click="ignore",
            key="predict_download_mlflow_body",
        )
    long_body = (
        ""
        if snippets.inline
        else f" The body is long: the call reads it from {BODY_FILE} (download it from the "
        "Azure ML body tab)."
    )
    calls = (
        (snippets.local_curl, "bash", "A local endpoint on this machine."),
        (snippets.local_python, "python", "A local endpoint on this machine."),
        (snippets.azure_curl, "bash", "An Azure ML managed online endpoint."),
        (snippets.azure_python, "python", "An Azure ML managed online endpoint."),
    )
    for tab, (code, language, where) in zip(tabs[2:], calls, strict=True):
        with tab:
            st.caption(where + long_body)
            st.code(code, language=language)
