"""The deployment store's SQLite file: schema, connections, transactions and audit entries.

Every write is one `BEGIN IMMEDIATE` transaction that also writes its audit entries, so a change
is either fully there with its history or not there at all, and concurrent writers (threads or
processes) are serialised by SQLite's lock. Connections are opened per call: sqlite3 connections
must not be shared between threads. The records kept in the file are DeploymentStore's (store.py);
batch jobs keep their own tables here through `write_transaction` and `audit_in`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from deploystudio.config import Settings
from deploystudio.deployment.actors import acting_now, local_user
from deploystudio.deployment.base import AuditEntry, DeploymentState
from deploystudio.deployment.traffic import MAX_MIRROR_PERCENT
from deploystudio.errors import DeploymentConfigError

DB_FILE = "deployments.db"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 10.0

_STATES = ", ".join(repr(s.value) for s in DeploymentState)
_SCHEMA = f"""
CREATE TABLE endpoints (
    name TEXT NOT NULL COLLATE NOCASE PRIMARY KEY,
    auth_mode TEXT NOT NULL CHECK (auth_mode IN ('key', 'none')),
    scoring_uri TEXT,
    front_pid INTEGER,
    front_port INTEGER,
    state TEXT NOT NULL CHECK (state IN ({_STATES})),
    reason TEXT,
    mirror_deployment TEXT COLLATE NOCASE,
    mirror_percent INTEGER CHECK (mirror_percent BETWEEN 1 AND {MAX_MIRROR_PERCENT}),
    description TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '{{}}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE endpoint_keys (
    endpoint_name TEXT NOT NULL COLLATE NOCASE PRIMARY KEY
        REFERENCES endpoints (name) ON DELETE CASCADE,
    primary_key TEXT NOT NULL,
    secondary_key TEXT NOT NULL
);
CREATE TABLE deployments (
    endpoint_name TEXT NOT NULL COLLATE NOCASE REFERENCES endpoints (name) ON DELETE CASCADE,
    name TEXT NOT NULL COLLATE NOCASE,
    model_uri TEXT NOT NULL,
    runtime TEXT NOT NULL CHECK (runtime IN ('azureml', 'mlflow')),
    bundle TEXT,
    state TEXT NOT NULL CHECK (state IN ({_STATES})),
    reason TEXT,
    log_tail TEXT,
    pid INTEGER,
    port INTEGER,
    log_path TEXT,
    traffic INTEGER NOT NULL DEFAULT 0 CHECK (traffic BETWEEN 0 AND 100),
    settings TEXT NOT NULL DEFAULT '{{}}',
    environment TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (endpoint_name, name)
);
-- No foreign key: the history of an endpoint outlives the endpoint.
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    endpoint_name TEXT COLLATE NOCASE,
    target TEXT NOT NULL,
    field TEXT,
    previous TEXT,
    new TEXT
);
CREATE INDEX audit_by_endpoint ON audit (endpoint_name, id);
"""


def store_path(settings: Settings) -> Path:
    """Where the deployment store lives inside the studio's data folder."""
    return settings.home / DB_FILE


def now() -> datetime:
    """The time a record or audit entry is stamped with (UTC)."""
    return datetime.now(UTC)


def _keep_private(path: Path, mode: int) -> None:
    """Take away group and other permissions from a file or folder this user owns."""
    info = path.stat()
    if info.st_mode & 0o077 and info.st_uid == os.getuid():
        os.chmod(path, mode)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class StoreFile:
    """One deployment store file, private to this user; safe across threads and processes."""

    def __init__(self, path: Path, actor: str | None = None) -> None:
        """Open (and on first use create) the store at `path`; `actor` signs the audit entries."""
        self.path = Path(path)
        self._actor = actor or local_user()
        # The data folder is the studio's user's only: it holds the store, logs and models.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():
            # Keys are stored here: only the studio's user may read the file. SQLite gives its
            # -wal and -shm files the same permissions.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        # A folder made by other means (mkdir, seed-demo) or a store copied in may be readable
        # by others: tighten them, as ssh does for its keys.
        _keep_private(self.path.parent, 0o700)
        _keep_private(self.path, 0o600)
        self._create_schema()

    @property
    def actor(self) -> str:
        """Who signs audit entries now: the `acting_as` user, else the store's own actor."""
        return acting_now() or self._actor

    @classmethod
    def from_settings(cls, settings: Settings, actor: str | None = None) -> Self:
        """Open the store in the studio's data folder (`settings.home / "deployments.db"`)."""
        return cls(store_path(settings), actor=actor)

    # -- connections and transactions ------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # `timeout` is SQLite's busy_timeout: a writer waits for the lock instead of failing.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            # IMMEDIATE takes the write lock before the first read, so checks made inside the
            # transaction (is this name free?) still hold when the insert runs.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            conn.execute("BEGIN")  # one snapshot for a record and its deployments
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
        finally:
            conn.close()

    def _enable_wal(self) -> None:
        """WAL is persistent in the file and lets readers go on while one process writes.
        Switching a new file to WAL needs an exclusive lock, and SQLite does not call its busy
        handler for that: two processes opening a new store at once get "database is locked"
        at once, so wait here the way busy_timeout would."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            conn = self._connect()
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            finally:
                conn.close()
            time.sleep(0.02)

    def _create_schema(self) -> None:
        self._enable_wal()
        with self._write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise DeploymentConfigError(
                    f"The deployment store {self.path} was written by a newer Deploy Studio "
                    f"(schema {version}, this one knows {SCHEMA_VERSION}). Upgrade Deploy Studio."
                )
            if version == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            columns = {row[1] for row in conn.execute("PRAGMA table_info(deployments)")}
            if "environment" not in columns:  # a store written before deployments recorded it
                conn.execute("ALTER TABLE deployments ADD COLUMN environment TEXT")

    # -- audit -------------------------------------------------------------------------------

    def _audit(
        self,
        conn: sqlite3.Connection,
        action: str,
        endpoint: str | None,
        target: str,
        field: str | None = None,
        previous: Any = None,
        new: Any = None,
    ) -> None:
        conn.execute(
            "INSERT INTO audit (at, actor, action, endpoint_name, target, field, previous, new)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                now().isoformat(),
                self.actor,
                action,
                endpoint,
                target,
                field,
                _dumps(previous),
                _dumps(new),
            ),
        )

    def audit(
        self,
        action: str,
        target: str,
        *,
        endpoint: str | None = None,
        field: str | None = None,
        previous: Any = None,
        new: Any = None,
    ) -> None:
        """Record an event that changes no record (e.g. a reconcile found a process gone).

        Changes made through this store are audited by the store itself, in their transaction.
        `previous` and `new` must be JSON-able and must not hold secrets.
        """
        with self._write() as conn:
            self._audit(conn, action, endpoint, target, field, previous, new)

    # -- for modules that keep their own tables in this file (batch jobs) ----------------------

    def write_transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A `BEGIN IMMEDIATE` transaction on this file, committed on exit, rolled back on error."""
        return self._write()

    def read_transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One consistent snapshot of this file."""
        return self._read()

    def audit_in(
        self, conn: sqlite3.Connection, action: str, target: str, *, new: Any = None
    ) -> None:
        """Write an audit entry inside the caller's `write_transaction`."""
        self._audit(conn, action, None, target, None, None, new)

    def history(self, endpoint: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """Return the newest `limit` audit entries, newest first; of one endpoint if given."""
        query = "SELECT * FROM audit"
        args: tuple[Any, ...] = ()
        if endpoint is not None:
            query += " WHERE endpoint_name = ?"
            args = (endpoint,)
        with self._read() as conn:
            rows = conn.execute(f"{query} ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [
            AuditEntry(
                id=row["id"],
                at=datetime.fromisoformat(row["at"]),
                actor=row["actor"],
                action=row["action"],
                target=row["target"],
                field=row["field"],
                previous=_loads(row["previous"]),
                new=_loads(row["new"]),
            )
            for row in rows
        ]
