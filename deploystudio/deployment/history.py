"""An endpoint's history (`DeploymentTarget.history` and `note`) for the targets that keep
their records in the deployment store: both do, so it is written once here."""

from __future__ import annotations

import contextlib
from typing import Any

from deploystudio.deployment.actors import acting_as
from deploystudio.deployment.base import AuditEntry
from deploystudio.deployment.store import DeploymentStore


class StoreHistory:
    """`history` and `note` over `self.store`; mixed into a DeploymentTarget."""

    store: DeploymentStore

    def history(self, endpoint: str, limit: int = 100) -> list[AuditEntry]:
        return self.store.history(endpoint, limit=limit)

    def note(
        self, endpoint: str, action: str, subject: str, new: Any = None, *, actor: str | None = None
    ) -> None:
        # Only a given actor replaces the one the caller's context signs with.
        with acting_as(actor) if actor else contextlib.nullcontext():
            self.store.audit(action, subject, endpoint=endpoint, new=new)
