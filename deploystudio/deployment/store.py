"""Endpoints, deployments, traffic, keys and their audit history in one SQLite file.

The single source of truth for what is deployed: the pages, the CLI and the MLflow deployments
plugin open the same file. Every write is one `BEGIN IMMEDIATE` transaction that also writes its
audit entries, so a change is either fully there with its history or not there at all, and
concurrent writers (threads or processes) are serialised by SQLite's lock. Connections are opened
per call: sqlite3 connections must not be shared between threads.

Names are unique per endpoint ignoring case (COLLATE NOCASE), as on Azure, where an endpoint name
becomes part of a DNS host name; records keep the spelling they were created with.
"""

from __future__ import annotations

import contextlib
import contextvars
import getpass
import json
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploystudio.config import Settings
from deploystudio.deployment.base import (
    ALLOWED_TRANSITIONS,
    RUNNING_STATES,
    AuditEntry,
    AuthMode,
    Deployment,
    DeploymentState,
    Endpoint,
    EndpointKeys,
    Runtime,
    local_auth_mode,
)
from deploystudio.deployment.names import validate_name
from deploystudio.deployment.traffic import MAX_MIRROR_PERCENT, checked_traffic, endpoint_share
from deploystudio.errors import (
    DeploymentConfigError,
    DeploymentNotFoundError,
    EndpointAuthError,
    EndpointNotFoundError,
    NameTakenError,
    ResourceInUseError,
    StateTransitionError,
)

DB_FILE = "deployments.db"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 10.0
MAX_LOG_TAIL_CHARS = 16_000
KEY_NAMES = ("primary", "secondary")
ENV_SETTING = "environment_variables"

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


# Who makes the changes of the current operation (a signed-in user of the app); when unset, a
# store signs with the actor it was opened with (the OS user for the CLI). A context variable,
# not a store attribute: the app shares one store between all its users' operations.
_ACTING_AS: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "deploystudio_acting_as", default=None
)


@contextmanager
def acting_as(actor: str | None) -> Iterator[None]:
    """Sign every audit entry written in this context (this thread or task) with `actor`."""
    token = _ACTING_AS.set(actor or None)
    try:
        yield
    finally:
        _ACTING_AS.reset(token)


def store_path(settings: Settings) -> Path:
    """Where the deployment store lives inside the studio's data folder."""
    return settings.home / DB_FILE


def _now() -> datetime:
    return datetime.now(UTC)


def local_user() -> str:
    """The OS login name that signs changes made outside the app (CLI, servers)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in the environment nor in the password database
        return "unknown"


def _keep_private(path: Path, mode: int) -> None:
    """Take away group and other permissions from a file or folder this user owns."""
    info = path.stat()
    if info.st_mode & 0o077 and info.st_uid == os.getuid():
        os.chmod(path, mode)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _quoted(names: list[str]) -> str:
    listed = ", ".join(repr(n) for n in names)
    return listed or "none"


class DeploymentStore:
    """Persistent records of endpoints and deployments; safe across threads and processes."""

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
        return _ACTING_AS.get() or self._actor

    @classmethod
    def from_settings(cls, settings: Settings, actor: str | None = None) -> DeploymentStore:
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
                _now().isoformat(),
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

    # -- endpoints ---------------------------------------------------------------------------

    def _endpoint_row(self, conn: sqlite3.Connection, name: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM endpoints WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = [r[0] for r in conn.execute("SELECT name FROM endpoints ORDER BY name")]
            raise EndpointNotFoundError(
                f"There is no endpoint named {name!r}. Known endpoints: {_quoted(known)}."
            )
        return row

    def _endpoint(self, conn: sqlite3.Connection, row: sqlite3.Row) -> Endpoint:
        traffic = {
            d["name"]: d["traffic"]
            for d in conn.execute(
                "SELECT name, traffic FROM deployments WHERE endpoint_name = ? ORDER BY name",
                (row["name"],),
            )
        }
        mirror = row["mirror_deployment"]
        return Endpoint(
            name=row["name"],
            auth_mode=AuthMode(row["auth_mode"]),
            scoring_uri=row["scoring_uri"],
            front_pid=row["front_pid"],
            front_port=row["front_port"],
            state=DeploymentState(row["state"]),
            reason=row["reason"],
            traffic=traffic,
            mirror=(mirror, row["mirror_percent"]) if mirror else None,
            created_at=datetime.fromisoformat(row["created_at"]),
            updated_at=datetime.fromisoformat(row["updated_at"]),
            description=row["description"],
            tags=json.loads(row["tags"]),
        )

    def create_endpoint(
        self,
        name: str,
        auth_mode: AuthMode | str = AuthMode.KEY,
        description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> Endpoint:
        """Create a `pending` endpoint (with two fresh keys for key auth) and return it.

        Raises InvalidNameError, NameTakenError (also when another thread or process creates the
        same name at the same time), EndpointAuthError for an unknown auth mode.
        """
        validate_name(name, "endpoint")
        mode = _auth_mode(auth_mode)
        tag_map = _tag_map(tags or {})
        now = _now().isoformat()
        with self._write() as conn:
            taken = conn.execute("SELECT name FROM endpoints WHERE name = ?", (name,)).fetchone()
            if taken is not None:
                raise NameTakenError(
                    f"An endpoint named {taken[0]!r} already exists (names ignore case). "
                    "Choose another name, or delete that endpoint first."
                )
            conn.execute(
                "INSERT INTO endpoints (name, auth_mode, state, description, tags, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, mode, DeploymentState.PENDING, description, json.dumps(tag_map), now, now),
            )
            if mode is AuthMode.KEY:
                conn.execute(
                    "INSERT INTO endpoint_keys VALUES (?, ?, ?)",
                    (name, secrets.token_urlsafe(32), secrets.token_urlsafe(32)),
                )
            config = {"auth_mode": mode.value, "description": description, "tags": tag_map}
            self._audit(conn, "create", name, name, new=config)
            return self._endpoint(conn, self._endpoint_row(conn, name))

    def get_endpoint(self, name: str) -> Endpoint:
        """Return one endpoint. Raises EndpointNotFoundError."""
        with self._read() as conn:
            return self._endpoint(conn, self._endpoint_row(conn, name))

    def list_endpoints(self) -> list[Endpoint]:
        """Return every endpoint, sorted by name."""
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM endpoints ORDER BY name").fetchall()
            return [self._endpoint(conn, row) for row in rows]

    def update_endpoint(self, name: str, changes: Mapping[str, Any]) -> Endpoint:
        """Change "description" and/or "tags"; return the updated endpoint.

        The auth mode is fixed at creation. Traffic goes through `set_traffic`.
        """
        unknown = set(changes) - {"description", "tags"}
        if unknown:
            raise DeploymentConfigError(
                f"Cannot change {_quoted(sorted(unknown))} of an endpoint: only its description "
                "and tags can change (traffic has its own setting)."
            )
        with self._write() as conn:
            row = self._endpoint_row(conn, name)
            for column, value in changes.items():
                stored = str(value) if column == "description" else _tag_map(value)
                previous = row[column] if column == "description" else json.loads(row[column])
                if stored == previous:
                    continue
                text = stored if column == "description" else json.dumps(stored)
                conn.execute(
                    f"UPDATE endpoints SET {column} = ?, updated_at = ? WHERE name = ?",
                    (text, _now().isoformat(), name),
                )
                self._audit(conn, "update", row["name"], row["name"], column, previous, stored)
            return self._endpoint(conn, self._endpoint_row(conn, name))

    def delete_endpoint(self, name: str, missing_ok: bool = False) -> None:
        """Delete an endpoint with its deployments, traffic and keys in one transaction.

        Refused (ResourceInUseError) while its front or any of its deployments may have a live
        process (starting, ready or stopping): the target stops the processes first, marks them
        stopped, then deletes. The audit history stays. Raises EndpointNotFoundError unless
        `missing_ok`.
        """
        with self._write() as conn:
            try:
                row = self._endpoint_row(conn, name)
            except EndpointNotFoundError:
                if missing_ok:
                    return
                raise
            endpoint = self._endpoint(conn, row)
            running = [
                d["name"]
                for d in conn.execute(
                    "SELECT name, state FROM deployments WHERE endpoint_name = ? ORDER BY name",
                    (row["name"],),
                )
                if DeploymentState(d["state"]) in RUNNING_STATES
            ]
            if endpoint.state in RUNNING_STATES or running:
                what = f"deployments {_quoted(running)}" if running else "its front process"
                raise ResourceInUseError(
                    f"Endpoint {endpoint.name!r} still runs ({what}). Stop it before deleting it."
                )
            for dep in self._deployments(conn, endpoint.name):
                self._audit(
                    conn,
                    "delete",
                    endpoint.name,
                    f"{endpoint.name}/{dep.name}",
                    previous=dep.as_dict(),
                )
            conn.execute("DELETE FROM endpoints WHERE name = ?", (endpoint.name,))
            self._audit(conn, "delete", endpoint.name, endpoint.name, previous=endpoint.as_dict())

    def set_endpoint_state(
        self, name: str, new_state: DeploymentState | str, reason: str | None = None
    ) -> Endpoint:
        """Move the endpoint's front process along ALLOWED_TRANSITIONS; return the record.

        Raises StateTransitionError naming both states when the move is not allowed.
        """
        target = DeploymentState(new_state)
        with self._write() as conn:
            row = self._endpoint_row(conn, name)
            current = DeploymentState(row["state"])
            _check_transition(f"endpoint {row['name']!r}", current, target, reason)
            values: dict[str, Any] = {"state": target.value, "reason": reason}
            if target is DeploymentState.STOPPED:
                values |= {"front_pid": None, "front_port": None}
            _update(conn, "endpoints", values, "name = ?", (row["name"],))
            self._audit_state(conn, row["name"], row["name"], row, target, reason)
            return self._endpoint(conn, self._endpoint_row(conn, name))

    def set_endpoint_process(
        self, name: str, pid: int | None, port: int | None, scoring_uri: str | None
    ) -> Endpoint:
        """Record the endpoint's front process (None clears a value); return the record."""
        with self._write() as conn:
            row = self._endpoint_row(conn, name)
            previous = {
                "front_pid": row["front_pid"],
                "front_port": row["front_port"],
                "scoring_uri": row["scoring_uri"],
            }
            new = {"front_pid": pid, "front_port": port, "scoring_uri": scoring_uri}
            _update(conn, "endpoints", new, "name = ?", (row["name"],))
            if new != previous:
                self._audit(conn, "set_process", row["name"], row["name"], "process", previous, new)
            return self._endpoint(conn, self._endpoint_row(conn, name))

    # -- keys --------------------------------------------------------------------------------

    def _keys_row(self, conn: sqlite3.Connection, name: str) -> sqlite3.Row:
        row = self._endpoint_row(conn, name)
        keys = conn.execute("SELECT * FROM endpoint_keys WHERE endpoint_name = ?", (name,))
        found = keys.fetchone()
        if found is None:
            raise EndpointAuthError(
                f"Endpoint {row['name']!r} uses auth mode {row['auth_mode']!r}: it has no keys. "
                "Create an endpoint with auth mode 'key' to get keys."
            )
        return found

    def get_keys(self, name: str) -> EndpointKeys:
        """Return the endpoint's primary and secondary keys (the only way to read them).

        Raises EndpointNotFoundError, EndpointAuthError when the endpoint uses no keys.
        """
        with self._read() as conn:
            row = self._keys_row(conn, name)
            return EndpointKeys(primary=row["primary_key"], secondary=row["secondary_key"])

    def regenerate_key(self, name: str, which: str) -> EndpointKeys:
        """Replace the "primary" or "secondary" key with a fresh one; return both keys.

        The audit records that the key was regenerated, never a key value.
        """
        if which not in KEY_NAMES:
            raise EndpointAuthError(
                f"Key {which!r} does not exist: choose 'primary' or 'secondary'."
            )
        with self._write() as conn:
            endpoint = self._keys_row(conn, name)["endpoint_name"]
            conn.execute(
                f"UPDATE endpoint_keys SET {which}_key = ? WHERE endpoint_name = ?",
                (secrets.token_urlsafe(32), endpoint),
            )
            conn.execute(
                "UPDATE endpoints SET updated_at = ? WHERE name = ?", (_now().isoformat(), endpoint)
            )
            self._audit(
                conn, "regenerate_key", endpoint, endpoint, f"{which}_key", new="regenerated"
            )
            row = self._keys_row(conn, name)
            return EndpointKeys(primary=row["primary_key"], secondary=row["secondary_key"])

    # -- deployments -------------------------------------------------------------------------

    def _deployment_row(self, conn: sqlite3.Connection, endpoint: str, name: str) -> sqlite3.Row:
        owner = self._endpoint_row(conn, endpoint)["name"]
        row = conn.execute(
            "SELECT * FROM deployments WHERE endpoint_name = ? AND name = ?", (owner, name)
        ).fetchone()
        if row is None:
            known = [d.name for d in self._deployments(conn, owner)]
            raise DeploymentNotFoundError(
                f"Endpoint {owner!r} has no deployment named {name!r}. "
                f"Its deployments: {_quoted(known)}."
            )
        return row

    def _deployments(self, conn: sqlite3.Connection, endpoint: str | None) -> list[Deployment]:
        if endpoint is None:
            rows = conn.execute("SELECT * FROM deployments ORDER BY endpoint_name, name")
        else:
            rows = conn.execute(
                "SELECT * FROM deployments WHERE endpoint_name = ? ORDER BY name", (endpoint,)
            )
        return [_deployment(row) for row in rows]

    def create_deployment(
        self,
        endpoint: str,
        name: str,
        model_uri: str,
        runtime: Runtime | str = Runtime.AZUREML,
        bundle: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> Deployment:
        """Create a `pending` deployment with no traffic under `endpoint`; return it.

        Raises InvalidNameError, NameTakenError, EndpointNotFoundError, DeploymentConfigError.
        """
        validate_name(name, "deployment")
        config = _deployment_config(
            {"model_uri": model_uri, "runtime": runtime, "bundle": bundle, "settings": settings}
        )
        now = _now().isoformat()
        with self._write() as conn:
            owner = self._endpoint_row(conn, endpoint)["name"]
            taken = conn.execute(
                "SELECT name FROM deployments WHERE endpoint_name = ? AND name = ?", (owner, name)
            ).fetchone()
            if taken is not None:
                raise NameTakenError(
                    f"Endpoint {owner!r} already has a deployment named {taken[0]!r} (names "
                    "ignore case). Choose another name, or update that deployment instead."
                )
            conn.execute(
                "INSERT INTO deployments (endpoint_name, name, model_uri, runtime, bundle, state,"
                " settings, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    owner,
                    name,
                    config["model_uri"],
                    config["runtime"],
                    config["bundle"],
                    DeploymentState.PENDING,
                    json.dumps(config["settings"]),
                    now,
                    now,
                ),
            )
            self._audit(conn, "create", owner, f"{owner}/{name}", new=config)
            return _deployment(self._deployment_row(conn, owner, name))

    def get_deployment(self, endpoint: str, name: str) -> Deployment:
        """Return one deployment. Raises EndpointNotFoundError, DeploymentNotFoundError."""
        with self._read() as conn:
            return _deployment(self._deployment_row(conn, endpoint, name))

    def list_deployments(self, endpoint: str | None = None) -> list[Deployment]:
        """Return the deployments of `endpoint`, or of every endpoint when None (for reconcile)."""
        with self._read() as conn:
            owner = None if endpoint is None else self._endpoint_row(conn, endpoint)["name"]
            return self._deployments(conn, owner)

    def update_deployment(self, endpoint: str, name: str, changes: Mapping[str, Any]) -> Deployment:
        """Change "model_uri", "runtime", "bundle" and/or "settings"; return the record.

        The state is not touched: the target restarts the process through `set_state`.
        """
        unknown = set(changes) - {"model_uri", "runtime", "bundle", "settings"}
        if unknown:
            raise DeploymentConfigError(
                f"Cannot change {_quoted(sorted(unknown))} of a deployment: only model_uri, "
                "runtime, bundle and settings can change."
            )
        with self._write() as conn:
            row = self._deployment_row(conn, endpoint, name)
            current = _deployment(row)
            merged = _deployment_config(
                {
                    "model_uri": current.model_uri,
                    "runtime": current.runtime,
                    "bundle": current.bundle,
                    "settings": current.settings,
                }
                | dict(changes)
            )
            target = f"{current.endpoint_name}/{current.name}"
            for column in changes:
                previous = getattr(current, column)
                previous = previous.value if isinstance(previous, Runtime) else previous
                if merged[column] == previous:
                    continue
                stored = json.dumps(merged[column]) if column == "settings" else merged[column]
                _update(
                    conn,
                    "deployments",
                    {column: stored},
                    "endpoint_name = ? AND name = ?",
                    (current.endpoint_name, current.name),
                )
                self._audit(
                    conn, "update", current.endpoint_name, target, column, previous, merged[column]
                )
            return _deployment(self._deployment_row(conn, endpoint, name))

    def set_state(
        self,
        endpoint: str,
        deployment: str,
        new_state: DeploymentState | str,
        reason: str | None = None,
        log_tail: str | None = None,
        pid: int | None = None,
        port: int | None = None,
        log_path: str | None = None,
        *,
        only_if: tuple[DeploymentState, int | None] | None = None,
    ) -> Deployment:
        """Move a deployment along ALLOWED_TRANSITIONS and return the record.

        `reason` and `log_tail` replace the stored ones (a failed state needs a reason); `pid`,
        `port` and `log_path` are kept when None, and pid/port are cleared on `stopped`.
        `only_if=(state, pid)` makes the move conditional, checked in the same transaction: a
        health check marks a server failed only if the record still shows it ready with that
        pid (not while the target is stopping or replacing it).
        Raises StateTransitionError naming both states when the move is not allowed.
        """
        target = DeploymentState(new_state)
        with self._write() as conn:
            row = self._deployment_row(conn, endpoint, deployment)
            owner, name = row["endpoint_name"], row["name"]
            current = DeploymentState(row["state"])
            if only_if is not None and (current, row["pid"]) != only_if:
                raise StateTransitionError(
                    f"Deployment {owner}/{name} is {current.value} with pid {row['pid']}, not "
                    f"{only_if[0].value} with pid {only_if[1]}: it was changed meanwhile."
                )
            _check_transition(f"deployment {owner}/{name}", current, target, reason)
            tail = log_tail[-MAX_LOG_TAIL_CHARS:] if log_tail else log_tail
            values: dict[str, Any] = {"state": target.value, "reason": reason, "log_tail": tail}
            for column, value in (("pid", pid), ("port", port), ("log_path", log_path)):
                if value is not None:
                    values[column] = value
            if target is DeploymentState.STOPPED:
                values |= {"pid": None, "port": None}
            _update(conn, "deployments", values, "endpoint_name = ? AND name = ?", (owner, name))
            self._audit_state(conn, owner, f"{owner}/{name}", row, target, reason)
            return _deployment(self._deployment_row(conn, owner, name))

    def replace_process(
        self,
        endpoint: str,
        deployment: str,
        pid: int,
        port: int,
        log_path: str,
        changes: Mapping[str, Any] | None = None,
    ) -> Deployment:
        """Point a ready deployment at a new, ready server process, with its new configuration
        ("model_uri", "runtime", "bundle", "settings") in the same transaction, so that the
        front never routes to a server with the other one's runtime. Returns the record.

        For a rolling update: the target starts the new server, calls this, then stops the old
        one. Raises StateTransitionError unless the deployment is ready.
        """
        with self._write() as conn:
            row = self._deployment_row(conn, endpoint, deployment)
            current = _deployment(row)
            label = f"{current.endpoint_name}/{current.name}"
            if current.state is not DeploymentState.READY:
                raise StateTransitionError(
                    f"Cannot switch deployment {label} to a new server: it is "
                    f"{current.state.value}, not ready. Restart it instead."
                )
            values: dict[str, Any] = {}
            if changes:
                unknown = set(changes) - {"model_uri", "runtime", "bundle", "settings"}
                if unknown:
                    raise DeploymentConfigError(
                        f"Cannot change {_quoted(sorted(unknown))} of a deployment: only "
                        "model_uri, runtime, bundle and settings can change."
                    )
                merged = _deployment_config(
                    {
                        "model_uri": current.model_uri,
                        "runtime": current.runtime.value,
                        "bundle": current.bundle,
                        "settings": current.settings,
                    }
                    | dict(changes)
                )
                for column in changes:
                    previous = getattr(current, column)
                    previous = previous.value if isinstance(previous, Runtime) else previous
                    if merged[column] != previous:
                        stored = merged[column]
                        values[column] = json.dumps(stored) if column == "settings" else stored
                        self._audit(
                            conn, "update", current.endpoint_name, label, column, previous, stored
                        )
            process = {"pid": pid, "port": port, "log_path": log_path}
            previous_process = {"pid": row["pid"], "port": row["port"], "log_path": row["log_path"]}
            _update(
                conn,
                "deployments",
                values | process,
                "endpoint_name = ? AND name = ?",
                (current.endpoint_name, current.name),
            )
            self._audit(
                conn,
                "replace_process",
                current.endpoint_name,
                label,
                "process",
                previous_process,
                process,
            )
            return _deployment(self._deployment_row(conn, endpoint, deployment))

    def _audit_state(
        self,
        conn: sqlite3.Connection,
        endpoint: str,
        target: str,
        row: sqlite3.Row,
        new_state: DeploymentState,
        reason: str | None,
    ) -> None:
        self._audit(conn, "set_state", endpoint, target, "state", row["state"], new_state.value)
        if reason != row["reason"]:
            self._audit(conn, "set_state", endpoint, target, "reason", row["reason"], reason)

    def delete_deployment(self, endpoint: str, name: str, missing_ok: bool = False) -> None:
        """Delete a deployment and its traffic entry in one transaction.

        Refused (ResourceInUseError) while it gets live or mirrored traffic (as on Azure: move the
        traffic first) or may have a live process (starting, ready, stopping: stop it first).
        Raises EndpointNotFoundError / DeploymentNotFoundError unless `missing_ok`.
        """
        with self._write() as conn:
            try:
                row = self._deployment_row(conn, endpoint, name)
            except (EndpointNotFoundError, DeploymentNotFoundError):
                if missing_ok:
                    return
                raise
            dep = _deployment(row)
            label = f"{dep.endpoint_name}/{dep.name}"
            owner = self._endpoint(conn, self._endpoint_row(conn, dep.endpoint_name))
            share = endpoint_share(owner, dep.name)
            if share:
                raise ResourceInUseError(
                    f"Deployment {label} still gets {share}. Set its traffic to 0 (and remove "
                    "the mirror) before deleting it."
                )
            if dep.state in RUNNING_STATES:
                raise ResourceInUseError(
                    f"Deployment {label} is {dep.state.value}. Stop it before deleting it."
                )
            conn.execute(
                "DELETE FROM deployments WHERE endpoint_name = ? AND name = ?",
                (dep.endpoint_name, dep.name),
            )
            self._audit(conn, "delete", dep.endpoint_name, label, previous=dep.as_dict())

    # -- traffic -----------------------------------------------------------------------------

    def set_traffic(
        self,
        endpoint: str,
        weights: Mapping[str, int],
        mirror: tuple[str, int] | None = None,
    ) -> Endpoint:
        """Replace the endpoint's live traffic and mirror, all or nothing; return the endpoint.

        `weights` maps deployments to integer percentages 0-100 that sum to 100, or are all 0;
        deployments left out get 0. `mirror` is (deployment, percent) with percent at most 50
        and a deployment that gets no live traffic (Azure's rules: one mirror target, a
        deployment gets live or mirrored traffic, not both); percent 0 means no mirror.
        Raises TrafficError saying which rule was broken; nothing is changed then.
        """
        with self._write() as conn:
            before = self._endpoint(conn, self._endpoint_row(conn, endpoint))
            # Checked on the deployments read inside the write transaction: one deleted by
            # another process a moment ago is not among them.
            checked, checked_mirror = checked_traffic(
                before.traffic, weights, mirror, f"endpoint {before.name!r}"
            )
            conn.execute(
                "UPDATE deployments SET traffic = 0 WHERE endpoint_name = ?", (before.name,)
            )
            for name, weight in checked.items():
                conn.execute(
                    "UPDATE deployments SET traffic = ? WHERE endpoint_name = ? AND name = ?",
                    (weight, before.name, name),
                )
            mirror_name, mirror_percent = checked_mirror or (None, None)
            _update(
                conn,
                "endpoints",
                {
                    "mirror_deployment": mirror_name,
                    "mirror_percent": mirror_percent,
                    "updated_at": _now().isoformat(),
                },
                "name = ?",
                (before.name,),
            )
            after = self._endpoint(conn, self._endpoint_row(conn, before.name))
            if after.traffic != before.traffic:
                self._audit(
                    conn,
                    "set_traffic",
                    before.name,
                    before.name,
                    "traffic",
                    before.traffic,
                    after.traffic,
                )
            if after.mirror != before.mirror:
                self._audit(
                    conn,
                    "set_traffic",
                    before.name,
                    before.name,
                    "mirror",
                    list(before.mirror) if before.mirror else None,
                    list(after.mirror) if after.mirror else None,
                )
            return after


def _auth_mode(value: AuthMode | str) -> AuthMode:
    # The store holds local endpoints only (Azure records live in their own tables): a token
    # mode here would be an endpoint the front treats as keyless, so it is refused here too.
    return local_auth_mode(value)


def _tag_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise DeploymentConfigError(f"Tags must be a mapping of names to values, not {value!r}.")
    return {str(k): str(v) for k, v in value.items()}


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _deployment_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a deployment's model URI, runtime, bundle and settings; return plain values."""
    model_uri = config["model_uri"]
    if not isinstance(model_uri, str) or not model_uri.strip():
        raise DeploymentConfigError("A deployment needs a model URI, e.g. 'models:/name/1'.")
    try:
        runtime = Runtime(config["runtime"])
    except ValueError:
        choices = ", ".join(repr(r.value) for r in Runtime)
        raise DeploymentConfigError(
            f"Unknown runtime {config['runtime']!r}: choose one of {choices}."
        ) from None
    bundle = config["bundle"]
    if bundle is not None:
        parts = bundle.split(":") if isinstance(bundle, str) else []
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise DeploymentConfigError(
                f"Scoring bundle {bundle!r} must be written name:version, e.g. 'my-score:1'."
            )
    raw_settings = config["settings"] or {}
    if not isinstance(raw_settings, Mapping):
        raise DeploymentConfigError(
            f"Deployment settings must be a mapping of names to values, not {raw_settings!r}."
        )
    settings = dict(raw_settings)
    env = settings.get(ENV_SETTING, [])
    # Values of environment variables may be secrets; the store keeps their names only and the
    # server reads the values from its environment when it starts.
    if not isinstance(env, list | tuple) or not all(
        isinstance(n, str) and _ENV_NAME.fullmatch(n) for n in env
    ):
        raise DeploymentConfigError(
            f"Setting {ENV_SETTING!r} must list variable names only (e.g. ['API_URL']), never "
            "values: values are read from the environment when the server starts."
        )
    try:
        json.dumps(settings)
    except (TypeError, ValueError) as exc:
        raise DeploymentConfigError(
            f"Deployment settings must be plain JSON values (numbers, text, lists): {exc}."
        ) from None
    return {
        "model_uri": model_uri,
        "runtime": runtime.value,
        "bundle": bundle,
        "settings": settings,
    }


def _check_transition(
    label: str, current: DeploymentState, target: DeploymentState, reason: str | None
) -> None:
    allowed = ALLOWED_TRANSITIONS[current]
    if target not in allowed:
        options = ", ".join(sorted(s.value for s in allowed))
        raise StateTransitionError(
            f"Cannot move {label} from {current.value!r} to {target.value!r}; from "
            f"{current.value!r} it can only go to: {options}."
        )
    if target is DeploymentState.FAILED and not reason:
        raise StateTransitionError(
            f"Cannot mark {label} failed without a reason: say what went wrong."
        )


def _update(
    conn: sqlite3.Connection,
    table: str,
    values: Mapping[str, Any],
    where: str,
    args: tuple[Any, ...],
) -> None:
    # Column names come from this module only, never from callers.
    assignments = ", ".join(f"{column} = ?" for column in values)
    stamp = "" if "updated_at" in values else ", updated_at = ?"
    extra = () if stamp == "" else (_now().isoformat(),)
    conn.execute(
        f"UPDATE {table} SET {assignments}{stamp} WHERE {where}",
        (*values.values(), *extra, *args),
    )


def _deployment(row: sqlite3.Row) -> Deployment:
    return Deployment(
        endpoint_name=row["endpoint_name"],
        name=row["name"],
        model_uri=row["model_uri"],
        runtime=Runtime(row["runtime"]),
        bundle=row["bundle"],
        state=DeploymentState(row["state"]),
        reason=row["reason"],
        log_tail=row["log_tail"],
        pid=row["pid"],
        port=row["port"],
        log_path=row["log_path"],
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        settings=json.loads(row["settings"]),
    )
