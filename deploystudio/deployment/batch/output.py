"""The job's predictions file, grown one finished file at a time, and the job's summary.

Workers write each file's predictions to a part file of their own; the runner appends a part to
the predictions file once its file is done (one writer, whole files only), so a job that stops
keeps every file it finished and nothing of a file it did not.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploystudio.deployment.batch.records import BatchJob, FileState, JobFile


class OutputColumnsError(Exception):
    """A part whose columns differ from those the predictions file started with."""


class OutputLinkError(OSError):
    """The predictions file is a symbolic link (maybe dangling): it is never written through."""


def _open_output(path: Path, flags: int) -> int:
    """os.open that refuses a symlink at `path`: a link placed there (even one that points
    nowhere yet) would otherwise make the job write wherever it points."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():
            raise OutputLinkError(
                f"the output '{path}' is a symbolic link; batch outputs are never written "
                "through links. Remove it, or choose another output folder."
            ) from None
        raise


@dataclass
class PredictionsFile:
    """`predictions.csv`: a header, then the rows of each finished file."""

    path: Path
    columns: list[str] | None = None
    rows: int = 0

    def append(self, part: Path, columns: list[str], rows: int) -> None:
        """Append a part (a CSV without header) whose columns are `columns`."""
        if self.columns is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            header = io.StringIO()
            csv.writer(header, lineterminator="\n").writerow(columns)
            fd = _open_output(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            with os.fdopen(fd, "w", encoding="utf-8") as target:
                target.write(header.getvalue())
            self.columns = list(columns)
        elif columns != self.columns:
            raise OutputColumnsError(
                f"its output has the columns {columns}, but the predictions file has "
                f"{self.columns} from the files before it"
            )
        fd = _open_output(self.path, os.O_WRONLY | os.O_APPEND)
        with part.open("rb") as source, os.fdopen(fd, "ab") as target:
            shutil.copyfileobj(source, target, 1 << 20)
        self.rows += rows


@dataclass
class WorkerMemory:
    """Resident memory of the job's workers, in MB: after loading the model, and at peak."""

    after_load: list[float] = field(default_factory=list)
    peak: float = 0.0
    # Seconds each worker start spent loading the model (or the script's init()).
    load_seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "after_load_mb": round(max(self.after_load), 1) if self.after_load else None,
            "peak_mb": round(self.peak, 1) if self.peak else None,
            # What reading and scoring added on top of the loaded model: the bound that chunked
            # reading keeps independent of file size.
            "growth_mb": (
                round(self.peak - max(self.after_load), 1)
                if self.after_load and self.peak
                else None
            ),
        }


def job_summary(
    job: BatchJob, files: list[JobFile], seconds: float, memory: WorkerMemory | None = None
) -> dict[str, Any]:
    """Files, rows, failed files with their errors, which files are in the output, duration,
    rows per second and worker memory."""
    done = [f for f in files if f.state is FileState.DONE]
    failed = [f for f in files if f.state is FileState.FAILED]
    pending = [f for f in files if f.state is FileState.PENDING]
    rows = sum(f.rows for f in done)
    return {
        "job_id": job.id,
        "model_uri": job.model_uri,
        "bundle": job.bundle,
        "input": str(job.input_path),
        # No file when nothing was scored: its columns come from the first file done.
        "output": str(job.output_path) if job.output_path and job.output_path.exists() else None,
        "files": len(files),
        "files_succeeded": len(done),
        "files_failed": len(failed),
        "files_not_scored": len(pending),
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds, 1) if seconds > 0 else None,
        "succeeded_files": [f.name for f in done],
        "failed_files": [{"file": f.name, "error": f.error} for f in failed],
        "not_scored_files": [f.name for f in pending],
        "worker_memory": (memory or WorkerMemory()).as_dict(),
        # Workers load in parallel: the longest load is the job's fixed start-up cost.
        "model_load_seconds": round(max(memory.load_seconds), 3)
        if memory and memory.load_seconds
        else None,
        # When the first worker could start scoring (workers start together): the job's span
        # less this is its scoring time, counting a second worker's load as lost time.
        "first_worker_ready_seconds": round(min(memory.load_seconds), 3)
        if memory and memory.load_seconds
        else None,
    }
