"""The process that runs one batch job, detached from the app so a page can be closed meanwhile:

    python -P -m deploystudio.deployment.batch.runner STORE_PATH JOB_ID

It reads its job from the store, hands mini-batches of files to `max_concurrency_per_instance`
worker processes (`PredictionWorker`: behind the sandbox, allow-listed environment, own
session, memory limit), retries a mini-batch that times out or crashes its worker up to
`max_retries` times, appends each finished file to the predictions file and records progress
in the store. It stops early when more files failed than `error_threshold` allows, or when the
job is cancelled (SIGTERM, or the store's cancel flag); either way the files finished so far
stay in the output. The runner is our code and writes the job's records, so it runs outside
the sandbox; only its workers run model code.

An error raised by the model or the script for a given input is not retried: the same input
gives the same error (Azure retries those too; here they cost no time).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from deploystudio.deployment.batch import portable
from deploystudio.deployment.batch.inputs import is_scorable, link_reason, unsupported_reason
from deploystudio.deployment.batch.output import (
    OutputColumnsError,
    PredictionsFile,
    WorkerMemory,
    job_summary,
)
from deploystudio.deployment.batch.records import BatchJob, BatchJobStore, FileState, JobState
from deploystudio.deployment.batch.scoring import (
    MiniBatchResult,
    ScorerSpec,
    part_path,
    prepare,
    score_mini_batch,
)
from deploystudio.errors import DeployStudioError, PredictionWorkerError
from deploystudio.worker.process import PredictionWorker
from deploystudio.worker.sandbox import Access

RUNNER_MODULE = "deploystudio.deployment.batch.runner"
SUMMARY_FILE = "summary.json"
LOAD_TIMEOUT_SECONDS = 600.0  # init() / model load: Azure's per-mini-batch timeout excludes it
POLL_SECONDS = 0.2
PROGRESS_SECONDS = 0.5

log = logging.getLogger("deploystudio.batch")
Batch = list[tuple[int, str]]  # (file position in the job, path)


class _Runner:
    def __init__(self, jobs: BatchJobStore, job: BatchJob) -> None:
        self.jobs = jobs
        self.job = job
        self.settings = job.settings
        self.stop = threading.Event()
        self.cancel_signal = threading.Event()
        self.lock = threading.Lock()  # the output file, counters and store writes of results
        self.queue: queue.Queue[Batch] = queue.Queue()
        self.output = None if job.output_path is None else PredictionsFile(job.output_path)
        self.parts = job.work_dir / "parts"
        self.memory = WorkerMemory()
        self.workers: list[PredictionWorker] = []
        self.failed = 0
        self.fail_reason: str | None = None
        self.cancelled = False

    # -- the job -------------------------------------------------------------------------

    def run(self) -> None:
        started = time.monotonic()
        self.jobs.transition(self.job.id, JobState.RUNNING, pid=os.getpid())
        if self.job.environment:
            log.info("Environment: %s", self.job.environment.get("reason"))
        self.parts.mkdir(parents=True, exist_ok=True)
        files = self.jobs.files(self.job.id)
        scorable: Batch = []
        refused = []
        for f in files:
            if Path(f.path).is_symlink():
                # A link may lead out of the folder the job may read, and a failure message
                # quotes what the file holds (its header): links are not read at all.
                refused.append((f.position, FileState.FAILED, 0, link_reason(f.path), 0))
            # A bundle's script decides what it reads; the model's own scorer reads CSV/Parquet.
            elif self.job.script_path is None and not is_scorable(f.path):
                refused.append((f.position, FileState.FAILED, 0, unsupported_reason(f.path), 0))
            else:
                scorable.append((f.position, str(f.path)))
        if refused:
            self._record(refused)
        size = self.settings.mini_batch_size
        for start in range(0, len(scorable), size):
            self.queue.put(scorable[start : start + size])
        count = min(self.settings.max_concurrency_per_instance, self.queue.qsize())
        threads = [
            threading.Thread(target=self._work, args=(k,), name=f"worker-{k}", daemon=True)
            for k in range(count)
        ]
        for thread in threads:
            thread.start()
        self._watch(threads)
        self._finish(time.monotonic() - started)

    def _watch(self, threads: list[threading.Thread]) -> None:
        last_progress = 0.0
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(POLL_SECONDS / len(threads))
            if not self.stop.is_set() and (
                self.cancel_signal.is_set() or self.jobs.get(self.job.id).cancel_requested
            ):
                log.info("Cancel requested: stopping the workers.")
                self.cancelled = True
                self._halt()
            if time.monotonic() - last_progress >= PROGRESS_SECONDS:
                last_progress = time.monotonic()
                with self.lock:
                    self.jobs.set_rows_in_progress(self.job.id, self._rows_in_flight(len(threads)))

    def _finish(self, seconds: float) -> None:
        for worker in self.workers:
            worker.stop()
        files = self.jobs.files(self.job.id)
        done = sum(f.state is FileState.DONE for f in files)
        output = self.job.output_path
        if done and output is not None and output.is_file() and not output.is_symlink():
            kept = f"{done} of {len(files)} file(s) finished and are kept in {output}."
        else:
            # Name no predictions file that was never written.
            kept = f"No file of {len(files)} finished: no predictions file was written."
        if self.cancelled:
            state, reason = JobState.CANCELLED, f"Cancelled. {kept}"
        elif self.fail_reason:
            state, reason = JobState.FAILED, f"{self.fail_reason} {kept}"
        else:
            state = JobState.COMPLETED
            failed = len(files) - done
            reason = (
                f"{failed} of {len(files)} file(s) failed (error_threshold -1 tolerates failures):"
                " see the failed files."
                if failed
                else None
            )
        summary = job_summary(self.job, files, seconds, self.memory)
        summary["state"] = state.value
        summary["environment"] = self.job.environment
        (self.job.work_dir / SUMMARY_FILE).write_text(_json(summary), encoding="utf-8")
        shutil.rmtree(self.parts, ignore_errors=True)
        self.jobs.transition(self.job.id, state, reason, summary=summary)
        log.info("Job %s %s: %s", self.job.id, state.value, reason or "all files scored")

    # -- a worker's thread -------------------------------------------------------------

    def _worker_access(self, index: int) -> Access:
        """What a worker's model code may reach: the model, the script, the job's input files
        to read; its progress file and the parts folder to write. Not the store, whose path
        this runner holds, nor the rest of the job's folder or the output, which the runner
        writes itself."""
        progress = self._progress_path(index)
        progress.write_text("0")  # a rule names an existing file
        source = self.job.input_path.resolve()
        # A file's link inside the input folder may lead out of it: its target is read too.
        targets = [f.path.resolve() for f in self.jobs.files(self.job.id)]
        outside = [t for t in targets if t != source and source not in t.parents]
        scripts = [] if self.job.script_path is None else [self.job.script_path]
        reads = [self.job.model_path, *scripts, source, *outside]
        root = (self.job.environment or {}).get("root")
        if root:  # the model's own environment, which the worker runs
            reads.append(Path(root))
        return Access.of(read=reads, write=[self.parts, progress])

    @property
    def _python(self) -> Path | None:
        """The interpreter of the model's own environment, None for the app's."""
        python = (self.job.environment or {}).get("python")
        return Path(python) if python else None

    def _work(self, index: int) -> None:
        worker = PredictionWorker(
            log_path=self.job.work_dir / f"worker-{index}.log",
            timeout_seconds=float(self.settings.timeout),
            access=self._worker_access(index),
            python=self._python,
        )
        self.workers.append(worker)
        spec = ScorerSpec(
            model_path=str(self.job.model_path),
            script_path=None if self.job.script_path is None else str(self.job.script_path),
            chunk_rows=self.settings.chunk_rows,
            write_output=self.output is not None,
            parts_dir=str(self.parts),
            progress_path=str(self._progress_path(index)),
            native_threads=max(
                1, (os.cpu_count() or 1) // self.settings.max_concurrency_per_instance
            ),
        )
        while not self.stop.is_set():
            try:
                batch = self.queue.get_nowait()
            except queue.Empty:
                return
            if not self._score(worker, spec, batch, index):
                return

    def _score(self, worker: PredictionWorker, spec: ScorerSpec, batch: Batch, index: int) -> bool:
        """Score one mini-batch with retries; False when the job must stop."""
        names = ", ".join(Path(path).name for _, path in batch)
        attempts = 0
        while not self.stop.is_set():
            attempts += 1
            try:
                if not worker.alive:
                    loading = time.monotonic()
                    after_load = worker.call(
                        *self._function(prepare, spec), timeout_seconds=LOAD_TIMEOUT_SECONDS
                    )
                    with self.lock:
                        self.memory.after_load.append(after_load)
                        self.memory.load_seconds.append(time.monotonic() - loading)
            except DeployStudioError as exc:
                if not self.stop.is_set():
                    what = "script's init()" if spec.script_path else "model"
                    self._fail(f"The {what} could not be loaded in a worker: {_first_line(exc)}")
                return False
            self._progress_path(index).write_text("0")
            try:
                result = worker.call(*self._function(score_mini_batch, spec), batch)
            except PredictionWorkerError as exc:  # a timeout or a crash: the worker restarts
                if self.stop.is_set():
                    return False
                if attempts <= self.settings.max_retries:
                    log.warning("Mini-batch [%s], attempt %d: %s", names, attempts, exc)
                    continue
                error = (
                    f"Mini-batch [{names}] failed {attempts} time(s) (max_retries "
                    f"{self.settings.max_retries}): {_first_line(exc)}"
                )
                self._record([(pos, FileState.FAILED, 0, error, attempts) for pos, _ in batch])
                return not self.stop.is_set()
            except DeployStudioError as exc:  # the script's run() raised
                what = "run()" if spec.script_path else "Scoring"
                error = f"{what} failed on the mini-batch [{names}]: {_first_line(exc)}"
                self._record([(pos, FileState.FAILED, 0, error, attempts) for pos, _ in batch])
                return not self.stop.is_set()
            try:
                kept = MiniBatchResult.from_plain(result, {pos for pos, _ in batch})
            except (KeyError, TypeError, ValueError) as exc:
                error = f"The worker's report on the mini-batch [{names}] is malformed: {exc}"
                self._record([(pos, FileState.FAILED, 0, error, attempts) for pos, _ in batch])
                return not self.stop.is_set()
            self._keep(kept, batch, attempts, index)
            return not self.stop.is_set()
        return False

    def _function(self, function, spec: ScorerSpec) -> tuple:
        """The function and spec a worker runs: in a model's own environment, the portable
        scorer with the spec as plain data (that environment may lack pyarrow and our app's
        modules, see `portable`)."""
        if self._python is None:
            return function, spec
        return getattr(portable, function.__name__), asdict(spec)

    def _keep(self, result: MiniBatchResult, batch: Batch, attempts: int, index: int) -> None:
        outcomes = {o.position: o for o in result.files}
        errors: dict[int, str] = {}
        with self.lock:
            self.memory.peak = max(self.memory.peak, result.peak_rss_mb)
            for part in result.parts:
                path = part_path(self.parts, part.positions[0])
                holds = [p for p in part.positions if outcomes[p].error is None]
                try:
                    if self.output is not None and holds:
                        self.output.append(path, part.columns, part.rows)
                except (OutputColumnsError, OSError) as exc:
                    errors.update({p: f"{Path(dict(batch)[p]).name}: {exc}" for p in holds})
                finally:
                    path.unlink(missing_ok=True)
            records = []
            for position, _ in batch:
                outcome = outcomes[position]
                error = errors.get(position, outcome.error)
                state = FileState.FAILED if error else FileState.DONE
                records.append((position, state, 0 if error else outcome.rows, error, attempts))
            self._progress_path(index).write_text("0")
        self._record(records)

    # -- shared state ------------------------------------------------------------------

    def _record(self, records: list[tuple[int, FileState, int, str | None, int]]) -> None:
        with self.lock:
            self.jobs.record_files(self.job.id, records)
            failures = [r for r in records if r[1] is FileState.FAILED]
            self.failed += len(failures)
            for _, _, _, error, _ in failures:
                log.warning("%s", error)
        threshold = self.settings.error_threshold
        if failures and threshold >= 0 and self.failed > threshold:
            self._fail(
                f"{self.failed} file(s) failed, more than error_threshold {threshold} allows; "
                f"the first: {failures[0][3]}"
            )

    def _fail(self, reason: str) -> None:
        with self.lock:
            if self.fail_reason is None and not self.cancelled:
                self.fail_reason = reason
        self._halt()

    def _halt(self) -> None:
        """Stop handing out work and end every worker at once: its thread then sees the job
        stopping and leaves its mini-batch pending."""
        self.stop.set()
        for worker in list(self.workers):
            pid = worker.pid
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)

    def _progress_path(self, index: int) -> Path:
        return self.job.work_dir / f"progress-{index}"

    def _rows_in_flight(self, workers: int) -> int:
        total = 0
        for index in range(workers):
            with contextlib.suppress(OSError, ValueError):
                total += int(self._progress_path(index).read_text() or 0)
        return total


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.split("\n\n", 1)[0] if text else type(exc).__name__


def _json(value: object) -> str:
    return json.dumps(value, indent=2, default=str)


def main(argv: list[str]) -> int:
    store_path, job_id = Path(argv[0]), argv[1]
    jobs = BatchJobStore.at(store_path)
    job = jobs.get(job_id)
    logging.basicConfig(
        level=job.settings.logging_level.upper(),
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stdout,
    )
    runner = _Runner(jobs, job)
    signal.signal(signal.SIGTERM, lambda *_: runner.cancel_signal.set())
    if job.state is not JobState.QUEUED:
        return 0
    if job.cancel_requested:
        jobs.transition(job_id, JobState.CANCELLED, "Cancelled before it started.")
        return 0
    try:
        runner.run()
    except BaseException as exc:
        traceback.print_exc()
        runner._halt()
        with contextlib.suppress(DeployStudioError):
            jobs.transition(
                job_id, JobState.FAILED, f"The batch job stopped on an internal error: {exc}"
            )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
