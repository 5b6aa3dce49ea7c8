"""Batch jobs: score a file or a folder of files with a model, as an Azure ML batch deployment
does, in a process of their own that outlives the page or command that started it.

The functions a page or the CLI call: `start_batch_job`, `get_batch_job` / `list_batch_jobs`
(poll progress: files and rows), `batch_job_files`, `batch_summary`, `cancel_batch_job`,
`wait_for_batch_job`. Records live in the deployment store's file (`batch_jobs`), work files
and by default the output under `<data folder>/batch-jobs/<job id>/`. The model's files are
resolved here, in the caller's process (which holds the registry credentials); the job's
processes get an allow-listed environment, and its workers, which run model code, reach the
model folder, the inputs and their own files only (`deploystudio.worker.sandbox`).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploystudio.config import Settings
from deploystudio.deployment.batch.azure_yaml import (
    batch_deployment,
    batch_deployment_yaml,
    batch_endpoint_yaml,
)
from deploystudio.deployment.batch.inputs import check_within_roots, input_files
from deploystudio.deployment.batch.output import job_summary
from deploystudio.deployment.batch.records import (
    BatchJob,
    BatchJobStore,
    JobFile,
    JobState,
    new_job_id,
)
from deploystudio.deployment.batch.runner import RUNNER_MODULE
from deploystudio.deployment.batch.settings import BatchSettings, OutputAction
from deploystudio.deployment.store import DeploymentStore
from deploystudio.environments.choice import choose
from deploystudio.errors import BatchInputError, DeployStudioError, StateTransitionError
from deploystudio.inference_server import spawn_detached
from deploystudio.prediction import local_model_path
from deploystudio.registry import Registry
from deploystudio.worker.isolation import scrubbed_environment

__all__ = [
    "BatchJob",
    "BatchSettings",
    "JobState",
    "OutputAction",
    "batch_deployment",
    "batch_deployment_yaml",
    "batch_endpoint_yaml",
    "batch_job_files",
    "batch_summary",
    "cancel_batch_job",
    "get_batch_job",
    "list_batch_jobs",
    "start_batch_job",
    "wait_for_batch_job",
]

JOBS_FOLDER = "batch-jobs"
RUNNER_LOG = "runner.log"
SCRIPT_COPY = "batch_score.py"
CANCEL_WAIT_SECONDS = 15.0


def _jobs(settings: Settings) -> BatchJobStore:
    return BatchJobStore(DeploymentStore.from_settings(settings))


def start_batch_job(
    settings: Settings,
    model_uri: str,
    input_path: Path | str,
    *,
    batch_settings: BatchSettings | None = None,
    bundle: str | None = None,
    output_dir: Path | str | None = None,
    restrict_input: bool = True,
    registry: Registry | None = None,
    env: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> BatchJob:
    """Queue a job and start its process; return the `queued` record at once.

    `input_path` is a .csv/.parquet file or a folder of them. With `restrict_input` (pages) it
    must lie inside `settings.allowed_batch_input_roots`; the CLI passes False, as its user may
    read any path. `output_dir` defaults to the job's folder in the data folder; a page never
    passes one. `bundle` ("name:version") scores with that bundle's batch script instead of the
    model's own predict. `env` (auto|model|app) chooses the environment the workers run in
    (`environments.choice`): a model environment that is not built yet is built here, before
    the job is queued, with its installer's lines passed to `progress`; the choice and its
    reason are kept in the job's record. Raises BatchInputError, BatchSettingsError,
    InvalidModelError, EnvModeError, EnvironmentBuildError, ...
    """
    options = batch_settings or BatchSettings()
    source, files = _inputs(settings, Path(input_path), restrict_input)
    model_path = local_model_path(model_uri, settings, registry)
    environment = _environment(env, model_path, settings, progress)
    job_id = new_job_id()
    work_dir = settings.home / JOBS_FOLDER / job_id
    output = Path(output_dir).expanduser().resolve() if output_dir else work_dir / "output"
    _check_output(output, options)
    work_dir.mkdir(parents=True)
    script_path, bundle_label = _bundle_script(settings, bundle, work_dir)
    jobs = _jobs(settings)
    jobs.create(
        job_id=job_id,
        model_uri=model_uri,
        model_path=model_path,
        bundle=bundle_label,
        script_path=script_path,
        input_path=source,
        output_dir=output,
        work_dir=work_dir,
        settings=options,
        files=files,
        environment=environment,
    )
    command = [sys.executable, "-P", "-m", RUNNER_MODULE, str(jobs.store.path), job_id]
    env = scrubbed_environment() | {"PYTHONUNBUFFERED": "1"}
    try:
        pid = spawn_detached(command, env, work_dir, work_dir / RUNNER_LOG, what="batch job")
    except DeployStudioError as exc:
        jobs.transition(job_id, JobState.FAILED, f"The job's process did not start: {exc}")
        raise
    jobs.set_pid(job_id, pid)
    return jobs.get(job_id)


def _environment(
    env: str, model_path: Path, settings: Settings, progress: Callable[[str], None] | None
) -> dict[str, Any]:
    chosen = choose(env, model_path, settings.home, progress=progress)
    environment = chosen.environment
    return {
        "mode": chosen.mode.value,
        "key": None if environment is None else environment.key,
        "python": None if environment is None else str(environment.python),
        "root": None if environment is None else str(environment.root),
        "python_version": None if environment is None else environment.python_version,
        "reason": chosen.reason,
    }


def _inputs(settings: Settings, input_path: Path, restrict: bool) -> tuple[Path, list[Path]]:
    roots = settings.allowed_batch_input_roots
    source = check_within_roots(input_path, roots) if restrict else input_path.resolve()
    files = input_files(source)
    if restrict:
        # A link inside a root may point outside it.
        for path in files:
            check_within_roots(path, roots)
    return source, files


def _check_output(output: Path, options: BatchSettings) -> None:
    if output.exists() and not output.is_dir():
        raise BatchInputError(f"The output '{output}' is a file: give a folder.")
    target = output / options.output_file_name
    if options.output_action is OutputAction.APPEND_ROW and target.exists():
        raise BatchInputError(
            f"'{target}' already exists: choose another output folder, or delete or move it "
            "(a job never overwrites earlier predictions)."
        )


def _bundle_script(
    settings: Settings, bundle: str | None, work_dir: Path
) -> tuple[Path | None, str | None]:
    """The bundle's batch script copied into the job's folder (later edits of the bundle do not
    change a running job), and its label."""
    if bundle is None:
        return None, None
    from deploystudio.customization.bundles import bundle_store
    from deploystudio.customization.scoring_script import ScriptTemplate

    name, _, version = bundle.partition(":")
    if not version.isdigit():
        raise BatchInputError(f"Bundle {bundle!r} must be written name:version, e.g. 'score:1'.")
    found = bundle_store(settings).get(name, int(version))
    if found.template != ScriptTemplate.BATCH.value:
        raise BatchInputError(
            f"Bundle {found.label} holds a {found.template!r} script for online endpoints; a batch "
            "job needs a batch script (run(mini_batch) over file paths): build one from the "
            "batch template."
        )
    target = work_dir / SCRIPT_COPY
    shutil.copyfile(found.path / "score.py", target)
    return target, found.label


# -- reading jobs --------------------------------------------------------------------------


def get_batch_job(settings: Settings, job_id: str) -> BatchJob:
    """The job's record, its progress counters current. Raises BatchJobNotFoundError."""
    jobs = _jobs(settings)
    return _reconciled(jobs, jobs.get(job_id))


def list_batch_jobs(settings: Settings, limit: int = 50) -> list[BatchJob]:
    """The newest jobs first."""
    jobs = _jobs(settings)
    return [_reconciled(jobs, job) for job in jobs.list_jobs(limit)]


def batch_job_files(settings: Settings, job_id: str) -> list[JobFile]:
    """The job's files in order, each pending, done (with its rows) or failed (with its error)."""
    return _jobs(settings).files(job_id)


def batch_summary(settings: Settings, job_id: str) -> dict[str, Any]:
    """The summary of a finished job; for a running one, the same figures so far."""
    jobs = _jobs(settings)
    job = _reconciled(jobs, jobs.get(job_id))
    if job.summary is not None:
        return job.summary
    started = job.started_at or job.created_at
    elapsed = max(0.0, time.time() - started.timestamp())
    summary = job_summary(job, jobs.files(job_id), elapsed)
    summary["state"] = job.state.value
    return summary


def runner_alive(job: BatchJob) -> bool:
    """Whether the job's runner process is alive, and is that runner (a pid read back later may
    belong to another program by then)."""
    if job.pid is None:
        return False
    try:
        command = Path(f"/proc/{job.pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{job.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z" and RUNNER_MODULE.encode() in command and job.id.encode() in command


def _reconciled(jobs: BatchJobStore, job: BatchJob) -> BatchJob:
    """A job whose runner died without finishing (killed, out of memory, machine restarted) is
    marked failed, keeping what it finished."""
    if job.finished or job.pid is None or runner_alive(job):
        return job
    try:
        return jobs.transition(
            job.id,
            JobState.CANCELLED if job.cancel_requested else JobState.FAILED,
            f"The job's process ended before the job finished (killed, or the machine "
            f"restarted); {job.files_done} of {job.files_total} file(s) were finished and kept.",
        )
    except StateTransitionError:  # it finished between the two reads
        return jobs.get(job.id)


# -- waiting and cancelling ------------------------------------------------------------------


def wait_for_batch_job(
    settings: Settings,
    job_id: str,
    timeout_seconds: float | None = None,
    progress: Callable[[BatchJob], None] | None = None,
    poll_seconds: float = 0.5,
) -> BatchJob:
    """Poll until the job has finished (or `timeout_seconds` passed); return its record."""
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    while True:
        job = get_batch_job(settings, job_id)
        if progress is not None:
            progress(job)
        if job.finished or (deadline is not None and time.monotonic() > deadline):
            return job
        time.sleep(poll_seconds)


def cancel_batch_job(
    settings: Settings, job_id: str, wait_seconds: float = CANCEL_WAIT_SECONDS
) -> BatchJob:
    """Cancel a queued or running job and wait for it to stop; the files it finished stay in its
    output. Raises StateTransitionError for a finished job, BatchJobNotFoundError."""
    jobs = _jobs(settings)
    job = jobs.request_cancel(job_id)
    if runner_alive(job):
        os.kill(job.pid, signal.SIGTERM)  # the runner stops its workers and records the state
        job = wait_for_batch_job(settings, job_id, timeout_seconds=wait_seconds, poll_seconds=0.1)
    if not job.finished:
        # Not started yet, or its runner does not answer: record the cancel here.
        if runner_alive(job):
            os.killpg(job.pid, signal.SIGKILL)
        try:
            job = jobs.transition(job_id, JobState.CANCELLED, "Cancelled.")
        except StateTransitionError:
            job = jobs.get(job_id)
    return job
