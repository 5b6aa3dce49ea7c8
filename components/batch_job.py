"""One batch job on the Batch page: live progress with a Cancel button while it runs; once it
has finished, its summary, failed files, first predictions, a chart, the download and the same
settings as Azure ML batch endpoint + deployment YAML."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from components import access
from components.batch_history import job_seconds
from components.prediction_chart import prediction_figure
from deploystudio.access import Action
from deploystudio.config import Settings
from deploystudio.deployment.actors import acting_as
from deploystudio.deployment.batch.jobs import (
    batch_deployment,
    batch_deployment_yaml,
    batch_endpoint_yaml,
    batch_job_files,
    batch_summary,
    cancel_batch_job,
    get_batch_job,
)
from deploystudio.deployment.batch.records import BatchJob, FileState, JobState
from deploystudio.deployment.batch.scoring import FILE_COLUMN, ROW_COLUMN
from deploystudio.deployment.deploy_request import suggest_endpoint_name
from deploystudio.errors import DeployStudioError
from deploystudio.model_uri import parse_model_uri

RESULT_ROWS = 100
# Predictions read for the chart: enough for a faithful shape, bounded for a 1 GB output.
CHART_ROWS = 20_000
FAILED_FILES_SHOWN = 20
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024
STATE_ICONS = {
    JobState.QUEUED: ":material/schedule:",
    JobState.RUNNING: ":material/progress_activity:",
    JobState.COMPLETED: ":material/check_circle:",
    JobState.FAILED: ":material/error:",
    JobState.CANCELLED: ":material/cancel:",
}


def render_job(settings: Settings, job_id: str) -> None:
    try:
        job = get_batch_job(settings, job_id)
    except DeployStudioError as exc:
        st.error(str(exc))
        return
    st.markdown(f"#### Job `{job.id}`")
    source = f"`{job.model_uri}`" + (f" with bundle {job.bundle}" if job.bundle else "")
    st.caption(f"{source} over `{job.input_path}`")
    if job.environment:
        st.caption(f":material/deployed_code: {job.environment.get('reason')}")
    if job.finished:
        _render_finished(settings, job)
    else:
        _render_live(settings, job_id)


@st.fragment(run_every=1)
def _render_live(settings: Settings, job_id: str) -> None:
    job = get_batch_job(settings, job_id)
    if job.finished:
        st.rerun()  # the whole page: the finished view replaces this one
    finished = job.files_done + job.files_failed
    st.progress(job.progress, text=f"{job.state.value}: {finished} of {job.files_total} file(s)")
    hint = _starting_hint(job)
    if hint:
        st.caption(hint)
    files, failed, rows, seconds = st.columns(4)
    files.metric("Files done", f"{job.files_done}/{job.files_total}")
    failed.metric("Files failed", job.files_failed)
    rows.metric("Rows scored", f"{job.rows_done:,}")
    elapsed = job_seconds(job)
    seconds.metric("Seconds", "-" if elapsed is None else f"{elapsed:.0f}")
    if st.button(
        "Cancel",
        icon=":material/stop:",
        key=f"batch_cancel__{job_id}",
        **access.button_args(Action.BATCH),
    ) and access.permitted(Action.BATCH):
        try:
            with acting_as(access.current_user().name):
                cancel_batch_job(settings, job_id)
        except DeployStudioError as exc:  # it finished meanwhile: show that
            st.warning(str(exc))
        st.rerun()


def _starting_hint(job: BatchJob) -> str | None:
    """What a job does before its first rows: loading a model takes seconds, and a bar at 0
    with nothing said looks hung."""
    if job.state is JobState.QUEUED:
        return ":material/hourglass_top: Queued: starting the job's process."
    if job.state is JobState.RUNNING and job.rows_done == 0 and not job.files_done:
        workers = min(job.settings.max_concurrency_per_instance, job.files_total) or 1
        what = "running the script's init()" if job.bundle else "loading the model"
        return (
            f":material/hourglass_top: Starting {workers} worker(s) and {what}; "
            "rows are counted from the first scored chunk."
        )
    return None


def _render_finished(settings: Settings, job: BatchJob) -> None:
    summary = batch_summary(settings, job.id)
    icon = STATE_ICONS[job.state]
    message = f"Job {job.state.value}" + (f": {job.reason}" if job.reason else ".")
    if job.state is JobState.COMPLETED:
        st.success(message, icon=icon)
    elif job.state is JobState.CANCELLED:
        st.warning(message, icon=icon)
    else:
        st.error(message, icon=icon)
    files, failed, rows, seconds, speed = st.columns(5)
    files.metric("Files scored", f"{summary['files_succeeded']}/{summary['files']}")
    failed.metric("Files failed", summary["files_failed"])
    rows.metric("Rows", f"{summary['rows']:,}")
    seconds.metric("Duration (s)", f"{summary['seconds']:.1f}")
    rate = summary["rows_per_second"] or 0
    # A few rows over a slow model: 0.4 rows/s must not read as 0.
    speed.metric("Rows/s", f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}")
    _render_files(settings, job)
    output = job.output_path
    if output is not None and output.is_file():
        _render_predictions(output)
    elif job.output_path is None:
        st.caption("output_action summary_only: this job wrote no predictions file.")
    else:
        st.caption("No predictions file: no file was scored.")
    _render_azure_export(job)


def _render_files(settings: Settings, job: BatchJob) -> None:
    files = batch_job_files(settings, job.id)
    failed = [f for f in files if f.state is FileState.FAILED]
    pending = [f for f in files if f.state is FileState.PENDING]
    if failed:
        st.markdown(f"**Failed files** ({len(failed)})")
        shown = failed[:FAILED_FILES_SHOWN]
        # A table, not a dataframe: it wraps the errors, which are sentences.
        st.table(
            pd.DataFrame({"file": [f.name for f in shown], "error": [f.error for f in shown]}),
            hide_index=True,
        )
        if len(failed) > FAILED_FILES_SHOWN:
            st.caption(f"All {len(failed)} failed files are in the job summary (CLI: batch show).")
    if pending:
        st.caption(
            f"Not scored ({len(pending)}): "
            + ", ".join(f.name for f in pending[:20])
            + (" ..." if len(pending) > 20 else "")
        )


def _render_predictions(output: Path) -> None:
    st.markdown(f"**Predictions** (first {RESULT_ROWS} rows of `{output}`)")
    # nrows: the output may hold millions of rows; the page shows and charts only the start.
    shown = pd.read_csv(output, nrows=CHART_ROWS)
    st.dataframe(shown.head(RESULT_ROWS), hide_index=True, key="batch_results")
    predictions = shown.drop(columns=[ROW_COLUMN, FILE_COLUMN], errors="ignore")
    figure = prediction_figure(predictions)
    if figure is not None:
        if len(shown) == CHART_ROWS:
            figure.update_layout(title=f"{figure.layout.title.text} - first {CHART_ROWS:,} rows")
        st.plotly_chart(figure, key="batch_chart")
    size = output.stat().st_size
    if size > MAX_DOWNLOAD_BYTES:
        st.info(
            f"{output.name} is {size / 2**20:,.0f} MB, more than the "
            f"{MAX_DOWNLOAD_BYTES // 2**20} MB a browser download takes here: read it on the "
            f"server at `{output}`."
        )
        return
    st.download_button(
        f"Download {output.name} ({size / 1024:,.0f} KB)",
        # A callable: the file is read when the button is clicked, not on every rerun.
        data=lambda: output.read_bytes(),
        file_name=output.name,
        mime="text/csv",
        icon=":material/download:",
        on_click="ignore",
        key="batch_download",
    )


def _render_azure_export(job: BatchJob) -> None:
    try:
        model = parse_model_uri(job.model_uri)
    except DeployStudioError:
        return
    if not model.is_registered:
        st.caption("Azure export: only a registered model version can be named in Azure.")
        return
    with st.expander("Azure ML batch endpoint + deployment (YAML)", icon=":material/cloud:"):
        endpoint = st.text_input(
            "Batch endpoint name",
            suggest_endpoint_name(f"{model.name}-batch", []),
            key=f"batch_azure_endpoint__{job.id}",
        ).strip()
        try:
            deployment = batch_deployment(job.settings, job.model_uri, endpoint, "default")
            text = batch_endpoint_yaml(endpoint) + "---\n" + batch_deployment_yaml(deployment)
        except DeployStudioError as exc:
            st.error(str(exc))
            return
        st.code(text, language="yaml")
        st.download_button(
            "Download YAML",
            text,
            file_name=f"{endpoint}-batch.yml",
            mime="application/yaml",
            icon=":material/download:",
            on_click="ignore",
            key="batch_azure_download",
        )
