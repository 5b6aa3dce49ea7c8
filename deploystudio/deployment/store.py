"""Endpoints, deployments, traffic, keys and their audit history in one SQLite file.

The single source of truth for what is deployed: the pages, the CLI and the MLflow deployments
plugin open the same file. The file, its transactions and the audit are store_file.py's; what a
record may hold and how a row becomes one, store_records.py's; the traffic rules, traffic.py's.

Names are unique per endpoint ignoring case (COLLATE NOCASE), as on Azure, where an endpoint name
becomes part of a DNS host name; records keep the spelling they were created with.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from deploystudio.deployment.base import (
    KEY_NAMES,
    RUNNING_STATES,
    AuthMode,
    Deployment,
    DeploymentState,
    Endpoint,
    EndpointKeys,
    Runtime,
)
from deploystudio.deployment.names import validate_name
from deploystudio.deployment.store_file import StoreFile, now
from deploystudio.deployment.store_records import (
    check_transition,
    checked_auth_mode,
    deployment_config,
    deployment_from_row,
    quoted,
    tag_map,
    update_row,
)
from deploystudio.deployment.traffic import checked_traffic, endpoint_share
from deploystudio.errors import (
    DeploymentConfigError,
    DeploymentNotFoundError,
    EndpointAuthError,
    EndpointNotFoundError,
    NameTakenError,
    ResourceInUseError,
    StateTransitionError,
)

MAX_LOG_TAIL_CHARS = 16_000


class DeploymentStore(StoreFile):
    """Persistent records of endpoints and deployments; safe across threads and processes."""

    # -- endpoints ---------------------------------------------------------------------------

    def _endpoint_row(self, conn: sqlite3.Connection, name: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM endpoints WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = [r[0] for r in conn.execute("SELECT name FROM endpoints ORDER BY name")]
            raise EndpointNotFoundError(
                f"There is no endpoint named {name!r}. Known endpoints: {quoted(known)}."
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
        mode = checked_auth_mode(auth_mode)
        tag_values = tag_map(tags or {})
        at = now().isoformat()
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
                (name, mode, DeploymentState.PENDING, description, json.dumps(tag_values), at, at),
            )
            if mode is AuthMode.KEY:
                conn.execute(
                    "INSERT INTO endpoint_keys VALUES (?, ?, ?)",
                    (name, secrets.token_urlsafe(32), secrets.token_urlsafe(32)),
                )
            config = {"auth_mode": mode.value, "description": description, "tags": tag_values}
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
                f"Cannot change {quoted(sorted(unknown))} of an endpoint: only its description "
                "and tags can change (traffic has its own setting)."
            )
        with self._write() as conn:
            row = self._endpoint_row(conn, name)
            for column, value in changes.items():
                stored = str(value) if column == "description" else tag_map(value)
                previous = row[column] if column == "description" else json.loads(row[column])
                if stored == previous:
                    continue
                text = stored if column == "description" else json.dumps(stored)
                conn.execute(
                    f"UPDATE endpoints SET {column} = ?, updated_at = ? WHERE name = ?",
                    (text, now().isoformat(), name),
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
                what = f"deployments {quoted(running)}" if running else "its front process"
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
            check_transition(f"endpoint {row['name']!r}", current, target, reason)
            values: dict[str, Any] = {"state": target.value, "reason": reason}
            if target is DeploymentState.STOPPED:
                values |= {"front_pid": None, "front_port": None}
            update_row(conn, "endpoints", values, "name = ?", (row["name"],))
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
            update_row(conn, "endpoints", new, "name = ?", (row["name"],))
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
                "UPDATE endpoints SET updated_at = ? WHERE name = ?", (now().isoformat(), endpoint)
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
                f"Its deployments: {quoted(known)}."
            )
        return row

    def _deployments(self, conn: sqlite3.Connection, endpoint: str | None) -> list[Deployment]:
        if endpoint is None:
            rows = conn.execute("SELECT * FROM deployments ORDER BY endpoint_name, name")
        else:
            rows = conn.execute(
                "SELECT * FROM deployments WHERE endpoint_name = ? ORDER BY name", (endpoint,)
            )
        return [deployment_from_row(row) for row in rows]

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
        config = deployment_config(
            {"model_uri": model_uri, "runtime": runtime, "bundle": bundle, "settings": settings}
        )
        created = now().isoformat()
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
                    created,
                    created,
                ),
            )
            self._audit(conn, "create", owner, f"{owner}/{name}", new=config)
            return deployment_from_row(self._deployment_row(conn, owner, name))

    def get_deployment(self, endpoint: str, name: str) -> Deployment:
        """Return one deployment. Raises EndpointNotFoundError, DeploymentNotFoundError."""
        with self._read() as conn:
            return deployment_from_row(self._deployment_row(conn, endpoint, name))

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
                f"Cannot change {quoted(sorted(unknown))} of a deployment: only model_uri, "
                "runtime, bundle and settings can change."
            )
        with self._write() as conn:
            row = self._deployment_row(conn, endpoint, name)
            current = deployment_from_row(row)
            merged = deployment_config(
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
                update_row(
                    conn,
                    "deployments",
                    {column: stored},
                    "endpoint_name = ? AND name = ?",
                    (current.endpoint_name, current.name),
                )
                self._audit(
                    conn, "update", current.endpoint_name, target, column, previous, merged[column]
                )
            return deployment_from_row(self._deployment_row(conn, endpoint, name))

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
        environment: Mapping[str, Any] | None = None,
    ) -> Deployment:
        """Move a deployment along ALLOWED_TRANSITIONS and return the record.

        `reason` and `log_tail` replace the stored ones (a failed state needs a reason); `pid`,
        `port` and `log_path` are kept when None, and pid/port are cleared on `stopped`;
        `environment` (what the new process runs in) likewise kept when None or empty.
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
            check_transition(f"deployment {owner}/{name}", current, target, reason)
            tail = log_tail[-MAX_LOG_TAIL_CHARS:] if log_tail else log_tail
            values: dict[str, Any] = {"state": target.value, "reason": reason, "log_tail": tail}
            for column, value in (("pid", pid), ("port", port), ("log_path", log_path)):
                if value is not None:
                    values[column] = value
            if environment:  # none said (a server config built elsewhere): the old one stays
                values["environment"] = json.dumps(dict(environment), sort_keys=True)
            if target is DeploymentState.STOPPED:
                values |= {"pid": None, "port": None}
            update_row(conn, "deployments", values, "endpoint_name = ? AND name = ?", (owner, name))
            self._audit_state(conn, owner, f"{owner}/{name}", row, target, reason)
            return deployment_from_row(self._deployment_row(conn, owner, name))

    def replace_process(
        self,
        endpoint: str,
        deployment: str,
        pid: int,
        port: int,
        log_path: str,
        changes: Mapping[str, Any] | None = None,
        environment: Mapping[str, Any] | None = None,
    ) -> Deployment:
        """Point a ready deployment at a new, ready server process, with its new configuration
        ("model_uri", "runtime", "bundle", "settings") and the environment it runs in, in the
        same transaction, so that the front never routes to a server with the other one's
        runtime. Returns the record.

        For a rolling update: the target starts the new server, calls this, then stops the old
        one. Raises StateTransitionError unless the deployment is ready.
        """
        with self._write() as conn:
            row = self._deployment_row(conn, endpoint, deployment)
            current = deployment_from_row(row)
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
                        f"Cannot change {quoted(sorted(unknown))} of a deployment: only "
                        "model_uri, runtime, bundle and settings can change."
                    )
                merged = deployment_config(
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
            if environment:  # none said (a server config built elsewhere): the old one stays
                values["environment"] = json.dumps(dict(environment), sort_keys=True)
            update_row(
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
            return deployment_from_row(self._deployment_row(conn, endpoint, deployment))

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
            dep = deployment_from_row(row)
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
            update_row(
                conn,
                "endpoints",
                {
                    "mirror_deployment": mirror_name,
                    "mirror_percent": mirror_percent,
                    "updated_at": now().isoformat(),
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
