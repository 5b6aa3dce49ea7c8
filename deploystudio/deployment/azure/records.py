"""Azure endpoints and deployments, in their own table of the deployment store's SQLite file.

Azure is the source of truth for what exists there; this table keeps what Azure does not: the
model URI and bundle a deployment came from, the reason of the last failure, and, while a
long-running operation runs, its azure-core continuation token (the operation's polling URL and
initial response, no credentials). A restarted app finds `pending` rows and resumes polling the
operation instead of sending the PUT or DELETE again.

One row per (workspace, endpoint, deployment); the endpoint's own row has deployment ''.
Online and batch resources are two kinds with a table each (an online and a batch endpoint may
share a name), with the same columns and the same life cycle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from deploystudio.deployment.base import AuthMode
from deploystudio.deployment.store import DeploymentStore

ENDPOINT_ROW = ""
ONLINE = "online"
BATCH = "batch"
_TABLES = {ONLINE: "azure_resources", BATCH: "azure_batch_resources"}
PENDING = "pending"
READY = "ready"
FAILED = "failed"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    workspace TEXT NOT NULL,
    endpoint_name TEXT NOT NULL COLLATE NOCASE,
    deployment_name TEXT NOT NULL COLLATE NOCASE DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ('pending', 'ready', 'failed')),
    operation TEXT,
    continuation_token TEXT,
    reason TEXT,
    log_tail TEXT,
    model_uri TEXT,
    bundle TEXT,
    settings TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (workspace, endpoint_name, deployment_name)
)
"""


@dataclass(frozen=True)
class AzureRecord:
    workspace: str
    endpoint_name: str
    # '' for the endpoint itself.
    deployment_name: str
    state: str
    # "create", "update", "delete", "traffic" while pending.
    operation: str | None
    continuation_token: str | None = field(repr=False)
    reason: str | None
    log_tail: str | None
    model_uri: str | None
    bundle: str | None
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    # ONLINE or BATCH: which kind of Azure endpoint the row is about.
    kind: str = ONLINE

    @property
    def target(self) -> str:
        if self.deployment_name:
            return f"{self.endpoint_name}/{self.deployment_name}"
        return self.endpoint_name

    @property
    def auth_mode(self) -> AuthMode | None:
        """The auth mode an online endpoint row was created with (None when not recorded)."""
        value = self.settings.get("auth_mode")
        return AuthMode(value) if value else None


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _record(row: Any, kind: str) -> AzureRecord:
    return AzureRecord(
        workspace=row["workspace"],
        endpoint_name=row["endpoint_name"],
        deployment_name=row["deployment_name"],
        state=row["state"],
        operation=row["operation"],
        continuation_token=row["continuation_token"],
        reason=row["reason"],
        log_tail=row["log_tail"],
        model_uri=row["model_uri"],
        bundle=row["bundle"],
        settings=json.loads(row["settings"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        kind=kind,
    )


class AzureRecords:
    """The rows of one workspace (`workspace` is its ARM id) for one kind of endpoint."""

    def __init__(self, store: DeploymentStore, workspace: str, kind: str = ONLINE) -> None:
        if kind not in _TABLES:
            raise ValueError(f"kind must be one of {', '.join(_TABLES)}, not {kind!r}")
        self.store = store
        self.workspace = workspace
        self.kind = kind
        self._table = _TABLES[kind]
        with store.write_transaction() as conn:
            conn.execute(_SCHEMA.replace("{table}", self._table))

    def begin(
        self,
        endpoint: str,
        deployment: str,
        operation: str,
        *,
        model_uri: str | None = None,
        bundle: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        """Mark the resource pending before its request is sent (kept fields survive)."""
        now = _now()
        with self.store.write_transaction() as conn:
            conn.execute(
                f"INSERT INTO {self._table} (workspace, endpoint_name, deployment_name, state,"
                " operation, model_uri, bundle, settings, created_at, updated_at)"
                " VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (workspace, endpoint_name, deployment_name) DO UPDATE SET"
                " state = 'pending', operation = excluded.operation, continuation_token = NULL,"
                " reason = NULL, log_tail = NULL,"
                " model_uri = COALESCE(excluded.model_uri, model_uri),"
                " bundle = CASE WHEN excluded.model_uri IS NULL THEN bundle"
                " ELSE excluded.bundle END,"
                " settings = CASE WHEN excluded.settings = '{}' THEN settings"
                " ELSE excluded.settings END,"
                " updated_at = excluded.updated_at",
                (
                    self.workspace,
                    endpoint,
                    deployment,
                    operation,
                    model_uri,
                    bundle,
                    json.dumps(settings or {}, sort_keys=True),
                    now,
                    now,
                ),
            )
        self._audit(f"azure {operation}", endpoint, deployment, {"state": PENDING})

    def set_token(self, endpoint: str, deployment: str, token: str | None) -> None:
        """Keep the running operation's continuation token, to resume after a restart."""
        with self.store.write_transaction() as conn:
            conn.execute(
                f"UPDATE {self._table} SET continuation_token = ?, updated_at = ?"
                " WHERE workspace = ? AND endpoint_name = ? AND deployment_name = ?",
                (token, _now(), self.workspace, endpoint, deployment),
            )

    def finish(
        self,
        endpoint: str,
        deployment: str,
        state: str,
        reason: str | None = None,
        log_tail: str | None = None,
    ) -> None:
        """End the operation: ready, or failed with the reason (the token is dropped)."""
        with self.store.write_transaction() as conn:
            row = conn.execute(
                f"SELECT operation FROM {self._table}"
                " WHERE workspace = ? AND endpoint_name = ? AND deployment_name = ?",
                (self.workspace, endpoint, deployment),
            ).fetchone()
            conn.execute(
                f"UPDATE {self._table} SET state = ?, reason = ?, log_tail = ?,"
                " operation = NULL, continuation_token = NULL, updated_at = ?"
                " WHERE workspace = ? AND endpoint_name = ? AND deployment_name = ?",
                (state, reason, log_tail, _now(), self.workspace, endpoint, deployment),
            )
        action = f"azure {row['operation'] if row and row['operation'] else 'change'}"
        self._audit(action, endpoint, deployment, {"state": state, "reason": reason})

    def restore(self, endpoint: str, deployment: str, previous: AzureRecord | None) -> None:
        """Put the row back as it was before `begin` (no row: drop it), for an operation Azure
        never started (its request was refused or never sent)."""
        with self.store.write_transaction() as conn:
            if previous is None:
                conn.execute(
                    f"DELETE FROM {self._table}"
                    " WHERE workspace = ? AND endpoint_name = ? AND deployment_name = ?",
                    (self.workspace, endpoint, deployment),
                )
            else:
                conn.execute(
                    f"UPDATE {self._table} SET state = ?, operation = ?, continuation_token = ?,"
                    " reason = ?, log_tail = ?, model_uri = ?, bundle = ?, settings = ?,"
                    " updated_at = ?"
                    " WHERE workspace = ? AND endpoint_name = ? AND deployment_name = ?",
                    (
                        previous.state,
                        previous.operation,
                        previous.continuation_token,
                        previous.reason,
                        previous.log_tail,
                        previous.model_uri,
                        previous.bundle,
                        json.dumps(previous.settings, sort_keys=True),
                        previous.updated_at.isoformat(),
                        self.workspace,
                        endpoint,
                        deployment,
                    ),
                )
        state = previous.state if previous else "none"
        self._audit("azure request refused", endpoint, deployment, {"state": state})

    def remove(self, endpoint: str, deployment: str | None = None) -> None:
        """Drop a deleted deployment's row, or (deployment None) an endpoint's rows."""
        with self.store.write_transaction() as conn:
            if deployment is None:
                conn.execute(
                    f"DELETE FROM {self._table} WHERE workspace = ? AND endpoint_name = ?",
                    (self.workspace, endpoint),
                )
            else:
                conn.execute(
                    f"DELETE FROM {self._table}"
                    " WHERE workspace = ? AND endpoint_name = ? AND deployment_name = ?",
                    (self.workspace, endpoint, deployment),
                )
        self._audit("azure delete", endpoint, deployment, {"state": "deleted"})

    def _audit(
        self, action: str, endpoint: str, deployment: str | None, new: dict[str, Any]
    ) -> None:
        # The store's public audit call, right after the change's own transaction: it files the
        # entry under the endpoint, so the endpoint's history shows Azure changes too.
        target = f"{endpoint}/{deployment}" if deployment else endpoint
        if self.kind == BATCH:
            action = action.replace("azure ", "azure batch ", 1)
        self.store.audit(action, target, endpoint=endpoint, new=new)

    def get(self, endpoint: str, deployment: str = ENDPOINT_ROW) -> AzureRecord | None:
        with self.store.read_transaction() as conn:
            row = conn.execute(
                f"SELECT * FROM {self._table}"
                " WHERE workspace = ? AND endpoint_name = ? AND deployment_name = ?",
                (self.workspace, endpoint, deployment),
            ).fetchone()
        return _record(row, self.kind) if row else None

    def all(self) -> list[AzureRecord]:
        with self.store.read_transaction() as conn:
            rows = conn.execute(
                f"SELECT * FROM {self._table} WHERE workspace = ?"
                " ORDER BY endpoint_name, deployment_name",
                (self.workspace,),
            ).fetchall()
        return [_record(row, self.kind) for row in rows]

    def pending(self) -> list[AzureRecord]:
        """Rows whose operation was started and not seen to end (oldest first)."""
        return sorted((r for r in self.all() if r.state == PENDING), key=lambda r: r.updated_at)
