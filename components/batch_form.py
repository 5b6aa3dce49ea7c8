"""The Batch page's form: which batch bundle scores, what to read (uploaded files or a folder on
the server), and the job's settings under Azure's names, defaults and help."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from components.bundle_choice import marked, unvalidated_labels, warn_if_unvalidated
from components.deploy_form import ModelChoice, bundles_for
from deploystudio.config import Settings
from deploystudio.customization.bundles import BundleStore
from deploystudio.customization.scoring_script import ScriptTemplate
from deploystudio.deployment.batch.inputs import check_within_roots
from deploystudio.deployment.batch.settings import LOGGING_LEVELS, BatchSettings, OutputAction
from deploystudio.errors import BatchInputError, BatchSettingsError

UPLOAD, FOLDER = "upload", "folder"
DEFAULTS = BatchSettings()
HELP = {
    "mini_batch_size": "Files passed to each run() call (Azure's mini-batch); a failed mini-batch "
    "is retried as a whole.",
    "max_concurrency_per_instance": "Worker processes scoring in parallel; each loads the model.",
    "output_action": "append_row writes every prediction to one file; summary_only keeps only "
    "the job's summary.",
    "output_file_name": "Name of the predictions file in the job's output folder.",
    "max_retries": "Retries of a mini-batch that times out or crashes before its files count "
    "as failed (retry_settings).",
    "timeout": "Seconds a mini-batch may take before it is retried (retry_settings).",
    "error_threshold": "Failed files tolerated before the job fails; -1 tolerates any number.",
    "logging_level": "Detail of the job's log.",
}


# Each setting's name in Azure ML's batch deployment YAML, shown in its help (the label says it
# in words).
AZURE_NAMES = {
    "max_retries": "retry_settings.max_retries",
    "timeout": "retry_settings.timeout",
}


OUTPUT_WORDS = {
    OutputAction.APPEND_ROW.value: "Every prediction, in one file",
    OutputAction.SUMMARY_ONLY.value: "Only the job's summary",
}


def azure_help(key: str) -> str:
    return f"{HELP[key]}\n\nAzure ML name: `{AZURE_NAMES.get(key, key)}`."


@dataclass(frozen=True)
class InputChoice:
    """Uploaded files to save, or a folder (or file) already on the server."""

    uploads: list[UploadedFile]
    folder: Path | None


def render_bundle(choice: ModelChoice, store: BundleStore) -> str | None:
    """A saved batch bundle of this model ("name:version"), or None for the model's predict."""
    bundles = [
        b for b in bundles_for(store, choice.name) if b.template == ScriptTemplate.BATCH.value
    ]
    labels = [b.label for b in bundles]
    unvalidated = unvalidated_labels(bundles)
    chosen = st.selectbox(
        "Batch scoring bundle",
        labels,
        index=None,
        format_func=lambda label: marked(label, unvalidated),
        placeholder="None: the model's own predict" if labels else "No batch bundle for this model",
        disabled=not labels,
        help="A batch score.py (run(mini_batch) over file paths) saved on the Customize page "
        "from the batch template.",
        key=f"batch_bundle__{choice.name}",
    )
    warn_if_unvalidated(chosen, unvalidated)
    return chosen


def render_input(settings: Settings) -> InputChoice | None:
    """Upload or folder; None (with the reason shown) until there is something to read."""
    roots = settings.allowed_batch_input_roots
    source = st.radio(
        "Input",
        [UPLOAD, FOLDER],
        format_func={UPLOAD: "Upload files", FOLDER: "Folder on the server"}.__getitem__,
        horizontal=True,
        key="batch_source",
    )
    if source == UPLOAD:
        files = st.file_uploader(
            "CSV or Parquet files",
            type=["csv", "parquet"],
            accept_multiple_files=True,
            help="Saved in the data folder for this job; each file is scored as one input file.",
            key="batch_upload",
        )
        return InputChoice(list(files), None) if files else None
    st.caption("Batch jobs may read inside: " + ", ".join(f"`{r}`" for r in roots))
    typed = st.text_input(
        "Folder or file path",
        placeholder=str(roots[0]) if roots else "",
        help="A .csv/.parquet file or a folder of them (sub-folders are not read, as on Azure).",
        key="batch_folder",
    ).strip()
    if not typed:
        return None
    try:
        # Checked as typed so the refusal shows before Run; the job checks each file again.
        return InputChoice([], check_within_roots(Path(typed), roots))
    except BatchInputError as exc:
        st.error(str(exc))
        return None


def run_fingerprint(
    model_uri: str,
    bundle: str | None,
    source: InputChoice,
    settings: BatchSettings,
    env_mode: str,
) -> str:
    """What makes two clicks on Run the same job: the model, bundle, input (uploaded files by
    name and content), settings and environment."""
    digest = hashlib.sha256()
    for part in (model_uri, bundle or "", env_mode, repr(settings), str(source.folder or "")):
        digest.update(part.encode() + b"\0")
    for upload in source.uploads:
        digest.update(upload.name.encode() + b"\0")
        digest.update(hashlib.sha256(upload.getvalue()).digest())
    return digest.hexdigest()


def render_settings() -> BatchSettings | None:
    """The settings in words, Azure's names in their help; None (with the reason shown) if
    they do not hold."""
    with st.expander("Settings", expanded=False):
        left, middle, right = st.columns(3)
        mini_batch_size = left.number_input(
            "Files per mini-batch", 1, 100_000, DEFAULTS.mini_batch_size,
            help=azure_help("mini_batch_size"), key="batch_mini_batch_size",
        )  # fmt: skip
        concurrency = middle.number_input(
            "Parallel workers", 1, 64, DEFAULTS.max_concurrency_per_instance,
            help=azure_help("max_concurrency_per_instance"), key="batch_concurrency",
        )  # fmt: skip
        error_threshold = right.number_input(
            "Failed files tolerated", -1, 2**31 - 1, DEFAULTS.error_threshold,
            help=azure_help("error_threshold"), key="batch_error_threshold",
        )  # fmt: skip
        max_retries = left.number_input(
            "Retries per mini-batch", 0, 100, DEFAULTS.max_retries,
            help=azure_help("max_retries"), key="batch_max_retries",
        )  # fmt: skip
        timeout = middle.number_input(
            "Mini-batch timeout (s)", 1, 7 * 24 * 3600, DEFAULTS.timeout,
            help=azure_help("timeout"), key="batch_timeout",
        )  # fmt: skip
        logging_level = right.selectbox(
            "Log detail", LOGGING_LEVELS, LOGGING_LEVELS.index(DEFAULTS.logging_level),
            help=azure_help("logging_level"), key="batch_logging_level",
        )  # fmt: skip
        output_action = left.selectbox(
            "Output", [a.value for a in OutputAction], 0,
            help=azure_help("output_action"), key="batch_output_action",
            format_func=lambda action: OUTPUT_WORDS.get(action, action),
        )  # fmt: skip
        output_file_name = middle.text_input(
            "Predictions file name", DEFAULTS.output_file_name,
            help=azure_help("output_file_name"), key="batch_output_file_name",
        ).strip()  # fmt: skip
    try:
        return BatchSettings(
            mini_batch_size=int(mini_batch_size),
            max_concurrency_per_instance=int(concurrency),
            output_action=OutputAction(output_action),
            output_file_name=output_file_name,
            max_retries=int(max_retries),
            timeout=int(timeout),
            error_threshold=int(error_threshold),
            logging_level=logging_level,
        )
    except BatchSettingsError as exc:
        st.error(str(exc))
        return None
