"""The app's local endpoints: the local target, the runner of its long work, and the loop that
keeps its records square with the processes while the app runs.

Here rather than in the pages' services so that pages reach local endpoints only through the
`DeploymentTarget` interface: the app builds this once (the UI layer caches it) and pages use
`target` as any target.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from deploystudio.config import Settings
from deploystudio.deployment.base import DeploymentTarget
from deploystudio.deployment.local.target import LocalTarget
from deploystudio.deployment.operations import OperationRunner
from deploystudio.registry import Registry

log = logging.getLogger(__name__)

RECONCILE_SUBJECT = "local endpoints"

# How often the app squares the records with the processes (a dead front is started again).
REPAIR_SECONDS = 5.0


@dataclass(frozen=True)
class LocalEndpoints:
    """The local deployment target and the runner that does its long work off the script."""

    target: DeploymentTarget
    operations: OperationRunner
    # The start-up reconcile, as an operation pages can show ("adopted 2 deployments").
    startup_operation_id: str
    # Set to end the periodic repair (when the app lets go of this object).
    stop_repairing: threading.Event = field(default_factory=threading.Event, compare=False)


def _keep_repairing(
    target: LocalTarget, operations: OperationRunner, startup_id: str, stop: threading.Event
) -> None:
    """Every REPAIR_SECONDS, after the start-up reconcile: `target.repair()`, until `stop`.

    Deployments heal through their front (a long-lived process per endpoint); a front that
    died has no such supervisor, so the app, which runs whenever the pages are used, starts it
    again, as does any CLI command that touches the endpoint. A failed pass is logged and the
    next one tries again.
    """
    operations.wait(startup_id, timeout_seconds=3600)
    while not stop.wait(REPAIR_SECONDS):
        try:
            target.repair()
        except Exception:  # a daemon loop: any failure is logged, the next pass tries again
            log.exception("Repairing local endpoints failed; trying again.")


def start_local_endpoints(settings: Settings, registry: Registry) -> LocalEndpoints:
    """The local target for `settings`, reconciled once (off the caller's thread: the first page
    is not held up) and then repaired every REPAIR_SECONDS until `stop_repairing` is set."""
    target = LocalTarget(settings, registry)
    operations = OperationRunner()
    # Adopt servers that outlived the last app run, mark dead ones, restart fronts.
    startup = operations.submit(
        RECONCILE_SUBJECT, "Reconcile endpoints with running servers", lambda _: target.reconcile()
    )
    endpoints = LocalEndpoints(target, operations, startup.id)
    threading.Thread(
        target=_keep_repairing,
        args=(target, operations, startup.id, endpoints.stop_repairing),
        name="repair-local-endpoints",
        daemon=True,
    ).start()
    return endpoints
