"""Batch job records, in their own tables of the deployment store's SQLite file.

A job goes `queued -> running -> completed | failed | cancelled` (or `queued -> cancelled` /
`failed` before it starts); every change is one transaction through the store's helpers, so a
page polling the record sees whole states. Each input file has a row too (pending, done or
failed, its rows and its error), so a stopped job says which files are in the output.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from deploystudio.deployment.batch.settings import BatchSettings
from deploystudio.deployment.store import DeploymentStore
from deploystudio.errors import BatchJobNotFoundError, StateTransitionError


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class FileState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


FINISHED_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
_ALLOWED = {
    JobState.QUEUED: {JobState.RUNNING, JobState.FAILED, JobState.CANCELLED},
    JobState.RUNNING: FINISHED_STATES,
}
_STATES = ", ".join(repr(s.value) for s in JobState)
_FILE_STATES = ", ".join(repr(s.value) for s in FileState)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS batch_jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ({_STATES})),
    reason TEXT,
    model_uri TEXT NOT NULL,
    model_path TEXT NOT NULL,
    bundle TEXT,
    script_path TEXT,
    input_path TEXT NOT NULL,
    output_dir TEXT NOT NULL,
    work_dir TEXT NOT NULL,
    settings TEXT NOT NULL,
    actor TEXT NOT NULL,
    pid INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    files_total INTEGER NOT NULL,
    files_done INTEGER NOT NULL DEFAULT 0,
    files_failed INTEGER NOT NULL DEFAULT 0,
    rows_done INTEGER NOT NULL DEFAULT 0,
    summary TEXT,
    environment TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
CREATE TABLE IF NOT EXISTS batch_job_files (
    job_id TEXT NOT NULL REFERENCES batch_jobs (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    path TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ({_FILE_STATES})),
    rows INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, position)
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@dataclass(frozen=True)
class JobFile:
    position: int
    path: Path
    state: FileState
    rows: int
    error: str | None
    attempts: int

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class BatchJob:
    """One job as stored; `summary` is set once it has finished."""

    id: str
    state: JobState
    reason: str | None
    model_uri: str
    model_path: Path
    bundle: str | None
    script_path: Path | None
    input_path: Path
    output_dir: Path
    work_dir: Path
    settings: BatchSettings
    actor: str
    pid: int | None
    cancel_requested: bool
    files_total: int
    files_done: int
    files_failed: int
    rows_done: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    summary: dict[str, Any] | None = field(default=None, compare=False)
    # Which environment runs the job's workers and why (issue 19): {"mode", "key", "python",
    # "root", "reason"}; "key"/"python"/"root" are None for the app's own. None for jobs
    # recorded before environments existed (they ran in the app's).
    environment: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def output_path(self) -> Path | None:
        """Where predictions go; None when the job writes a summary only."""
        if self.settings.output_action == "summary_only":
            return None
        return self.output_dir / self.settings.output_file_name

    @property
    def progress(self) -> float:
        """Files finished (done or failed) out of all, from 0 to 1."""
        if not self.files_total:
            return 1.0
        return (self.files_done + self.files_failed) / self.files_total

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state.value,
            "reason": self.reason,
            "model_uri": self.model_uri,
            "bundle": self.bundle,
            "input_path": str(self.input_path),
            "output_path": None if self.output_path is None else str(self.output_path),
            "settings": self.settings.as_dict(),
            "actor": self.actor,
            "files_total": self.files_total,
            "files_done": self.files_done,
            "files_failed": self.files_failed,
            "rows_done": self.rows_done,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "summary": self.summary,
            "environment": self.environment,
        }


def new_job_id() -> str:
    """Sortable by creation time, unique without a lock: `batch-YYYYmmdd-HHMMSS-xxxxxx`."""
    return f"batch-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


class BatchJobStore:
    """Job records in the deployment store's file; safe across threads and processes."""

    def __init__(self, store: DeploymentStore) -> None:
        self.store = store
        with store.write_transaction() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(batch_jobs)")}
            if "environment" not in columns:  # a store written before environments existed
                conn.execute("ALTER TABLE batch_jobs ADD COLUMN environment TEXT")

    @classmethod
    def at(cls, path: Path) -> BatchJobStore:
        return cls(DeploymentStore(path))

    def create(
        self,
        *,
        job_id: str,
        model_uri: str,
        model_path: Path,
        bundle: str | None,
        script_path: Path | None,
        input_path: Path,
        output_dir: Path,
        work_dir: Path,
        settings: BatchSettings,
        files: list[Path],
        environment: dict[str, Any] | None = None,
    ) -> BatchJob:
        """A `queued` job with its files pending; audited as `batch_start`."""
        with self.store.write_transaction() as conn:
            conn.execute(
                "INSERT INTO batch_jobs (id, state, model_uri, model_path, bundle, script_path,"
                " input_path, output_dir, work_dir, settings, actor, files_total, created_at,"
                " environment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    JobState.QUEUED,
                    model_uri,
                    str(model_path),
                    bundle,
                    None if script_path is None else str(script_path),
                    str(input_path),
                    str(output_dir),
                    str(work_dir),
                    json.dumps(settings.as_dict()),
                    self.store.actor,
                    len(files),
                    _now(),
                    None if environment is None else json.dumps(environment),
                ),
            )
            conn.executemany(
                "INSERT INTO batch_job_files (job_id, position, path, state) VALUES (?, ?, ?, ?)",
                [(job_id, i, str(p), FileState.PENDING) for i, p in enumerate(files)],
            )
            self.store.audit_in(
                conn,
                "batch_start",
                job_id,
                new={
                    "model_uri": model_uri,
                    "bundle": bundle,
                    "input": str(input_path),
                    "output": str(output_dir),
                    "files": len(files),
                    "settings": settings.as_dict(),
                    "environment": environment,
                },
            )
            return _job(self._row(conn, job_id))

    def get(self, job_id: str) -> BatchJob:
        with self.store.read_transaction() as conn:
            return _job(self._row(conn, job_id))

    def list_jobs(self, limit: int = 100) -> list[BatchJob]:
        """The newest `limit` jobs, newest first."""
        with self.store.read_transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM batch_jobs ORDER BY created_at DESC, id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_job(row) for row in rows]

    def files(self, job_id: str) -> list[JobFile]:
        with self.store.read_transaction() as conn:
            self._row(conn, job_id)
            rows = conn.execute(
                "SELECT * FROM batch_job_files WHERE job_id = ? ORDER BY position", (job_id,)
            ).fetchall()
        return [
            JobFile(
                position=r["position"],
                path=Path(r["path"]),
                state=FileState(r["state"]),
                rows=r["rows"],
                error=r["error"],
                attempts=r["attempts"],
            )
            for r in rows
        ]

    def transition(
        self,
        job_id: str,
        state: JobState,
        reason: str | None = None,
        *,
        pid: int | None = None,
        summary: dict[str, Any] | None = None,
    ) -> BatchJob:
        """Move the job to `state` if its current state allows it (StateTransitionError if not)."""
        with self.store.write_transaction() as conn:
            current = _job(self._row(conn, job_id))
            if state not in _ALLOWED.get(current.state, set()):
                raise StateTransitionError(
                    f"Batch job {job_id} is {current.state.value}; it cannot become {state.value}."
                )
            values: dict[str, Any] = {"state": state.value, "reason": reason}
            if state is JobState.RUNNING:
                values["started_at"] = _now()
            if state in FINISHED_STATES:
                values["finished_at"] = _now()
            if pid is not None:
                values["pid"] = pid
            if summary is not None:
                values["summary"] = json.dumps(summary)
            _update(conn, job_id, values)
            if state in FINISHED_STATES:
                self.store.audit_in(
                    conn, "batch_finish", job_id, new={"state": state.value, "reason": reason}
                )
            return _job(self._row(conn, job_id))

    def set_pid(self, job_id: str, pid: int) -> None:
        with self.store.write_transaction() as conn:
            _update(conn, job_id, {"pid": pid})

    def request_cancel(self, job_id: str) -> BatchJob:
        """Flag the job for its runner to stop; audited as `batch_cancel`. A finished job raises
        StateTransitionError."""
        with self.store.write_transaction() as conn:
            job = _job(self._row(conn, job_id))
            if job.finished:
                raise StateTransitionError(
                    f"Batch job {job_id} has already {job.state.value}: there is nothing to cancel."
                )
            _update(conn, job_id, {"cancel_requested": 1})
            self.store.audit_in(conn, "batch_cancel", job_id, new={"state": job.state.value})
            return _job(self._row(conn, job_id))

    def record_files(
        self, job_id: str, outcomes: list[tuple[int, FileState, int, str | None, int]]
    ) -> BatchJob:
        """Record finished files as (position, state, rows, error, attempts) and update the
        job's counters, in one transaction."""
        with self.store.write_transaction() as conn:
            conn.executemany(
                "UPDATE batch_job_files SET state = ?, rows = ?, error = ?, attempts = ?"
                " WHERE job_id = ? AND position = ?",
                [(s.value, rows, err, att, job_id, pos) for pos, s, rows, err, att in outcomes],
            )
            counts = conn.execute(
                "SELECT"
                " COALESCE(SUM(state = 'done'), 0), COALESCE(SUM(state = 'failed'), 0),"
                " COALESCE(SUM(rows), 0) FROM batch_job_files WHERE job_id = ?",
                (job_id,),
            ).fetchone()
            _update(
                conn,
                job_id,
                {"files_done": counts[0], "files_failed": counts[1], "rows_done": counts[2]},
            )
            return _job(self._row(conn, job_id))

    def set_rows_in_progress(self, job_id: str, rows: int) -> None:
        """Rows of finished files plus `rows` scored so far in files still being read."""
        with self.store.write_transaction() as conn:
            conn.execute(
                "UPDATE batch_jobs SET rows_done = ? + (SELECT COALESCE(SUM(rows), 0)"
                " FROM batch_job_files WHERE job_id = ?) WHERE id = ?",
                (rows, job_id, job_id),
            )

    def _row(self, conn: sqlite3.Connection, job_id: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM batch_jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise BatchJobNotFoundError(
                f"There is no batch job {job_id!r}. `deploystudio batch list` shows the jobs."
            )
        return row


def _update(conn: sqlite3.Connection, job_id: str, values: dict[str, Any]) -> None:
    # Column names come from this module only, never from callers.
    assignments = ", ".join(f"{column} = ?" for column in values)
    conn.execute(f"UPDATE batch_jobs SET {assignments} WHERE id = ?", (*values.values(), job_id))


def _job(row: sqlite3.Row) -> BatchJob:
    return BatchJob(
        id=row["id"],
        state=JobState(row["state"]),
        reason=row["reason"],
        model_uri=row["model_uri"],
        model_path=Path(row["model_path"]),
        bundle=row["bundle"],
        script_path=Path(row["script_path"]) if row["script_path"] else None,
        input_path=Path(row["input_path"]),
        output_dir=Path(row["output_dir"]),
        work_dir=Path(row["work_dir"]),
        settings=BatchSettings.from_dict(json.loads(row["settings"])),
        actor=row["actor"],
        pid=row["pid"],
        cancel_requested=bool(row["cancel_requested"]),
        files_total=row["files_total"],
        files_done=row["files_done"],
        files_failed=row["files_failed"],
        rows_done=row["rows_done"],
        created_at=datetime.fromisoformat(row["created_at"]),
        started_at=_time(row["started_at"]),
        finished_at=_time(row["finished_at"]),
        summary=json.loads(row["summary"]) if row["summary"] else None,
        environment=json.loads(row["environment"]) if row["environment"] else None,
    )
