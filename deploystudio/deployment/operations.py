"""Long deployment work (start a server, roll traffic, delete) run off the caller's thread.

A Streamlit script is stopped at its next widget call whenever the user clicks anything, so a
deployment started inline would be abandoned halfway, between two of its store writes. Work is
therefore handed to a runner that outlives the script run: the page submits it, then polls the
operation's messages and outcome on later runs. One operation per subject (an endpoint) runs at
a time; a second submission for the same subject (another user, or a double click) is refused
with who started the first one and when.

The runner lives in one process (the app's); changes from other processes (the CLI) are
serialized by the deployment store's transactions, not here.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from deploystudio.deployment.actors import acting_as
from deploystudio.deployment.base import Progress
from deploystudio.errors import DeployStudioError, OperationInProgressError

logger = logging.getLogger(__name__)

# Finished operations kept for the pages to show (per runner, oldest dropped first).
KEEP_FINISHED = 200
MAX_MESSAGES = 200



class OperationState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Operation:
    """A snapshot of one piece of work: what it is about, its progress lines and its outcome."""

    id: str
    subject: str
    title: str
    actor: str
    started_at: datetime
    state: OperationState = OperationState.RUNNING
    messages: tuple[str, ...] = ()
    finished_at: datetime | None = None
    # The work's return value (a record), or None.
    result: Any = None
    # A message a user can act on; tracebacks of unexpected errors go to the log only.
    error: str | None = None
    error_type: str | None = None

    @property
    def done(self) -> bool:
        return self.state is not OperationState.RUNNING

    @property
    def seconds(self) -> float:
        end = self.finished_at or datetime.now(UTC)
        return (end - self.started_at).total_seconds()


@dataclass
class _Entry:
    operation: Operation
    lock: threading.Lock = field(default_factory=threading.Lock)


class OperationRunner:
    """Runs submitted work on a small thread pool and keeps each operation's latest snapshot."""

    def __init__(self, max_workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="deploy-op")
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._running_by_subject: dict[str, str] = {}

    def submit(
        self,
        subject: str,
        title: str,
        work: Callable[[Progress], Any],
        actor: str = "",
    ) -> Operation:
        """Start `work(progress)` for `subject`; raise OperationInProgressError if another
        operation on the same subject has not finished.

        The work's audit entries are signed with `actor` (when given), whichever thread runs it.
        """
        with self._lock:
            running_id = self._running_by_subject.get(subject)
            if running_id is not None:
                running = self._entries[running_id].operation
                raise OperationInProgressError(
                    f"{subject} is busy: {running.title!r} is in progress, started by "
                    f"{running.actor or 'someone'} at {running.started_at:%H:%M:%S} UTC "
                    f"({running.seconds:.0f} s ago). Wait for it to finish, then try again."
                )
            operation = Operation(
                id=uuid.uuid4().hex,
                subject=subject,
                title=title,
                actor=actor,
                started_at=datetime.now(UTC),
            )
            entry = _Entry(operation)
            self._entries[operation.id] = entry
            self._running_by_subject[subject] = operation.id
            self._forget_old()
        # Pool threads do not inherit the submitter's context variables: carry them over.
        context = contextvars.copy_context()
        self._pool.submit(context.run, self._run, entry, work)
        return operation

    def get(self, operation_id: str) -> Operation | None:
        entry = self._entries.get(operation_id)
        return entry.operation if entry else None

    def running(self, subject: str | None = None) -> list[Operation]:
        with self._lock:
            ids = list(self._running_by_subject.values())
        found = [self._entries[i].operation for i in ids if i in self._entries]
        return [op for op in found if subject is None or op.subject == subject]

    def recent(self, subject: str | None = None, limit: int = 20) -> list[Operation]:
        """Latest operations first, running ones included."""
        with self._lock:
            # The dict keeps submission order (timestamps of quick submissions can tie).
            operations = [e.operation for e in reversed(self._entries.values())]
        return [op for op in operations if subject is None or op.subject == subject][:limit]

    def wait(self, operation_id: str, timeout_seconds: float) -> Operation | None:
        """Block until the operation finishes or the timeout passes; return its snapshot."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            operation = self.get(operation_id)
            if operation is None or operation.done or time.monotonic() > deadline:
                return operation
            time.sleep(0.05)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)

    # -- inside the pool ---------------------------------------------------------------------

    def _run(self, entry: _Entry, work: Callable[[Progress], Any]) -> None:
        def progress(message: str) -> None:
            with entry.lock:
                messages = (*entry.operation.messages, message)[-MAX_MESSAGES:]
                entry.operation = replace(entry.operation, messages=messages)

        outcome: dict[str, Any] = {"state": OperationState.SUCCEEDED}
        try:
            actor = entry.operation.actor
            # Without an actor the work keeps the submitter's (copied) context, if it had one.
            with acting_as(actor) if actor else contextlib.nullcontext():
                outcome["result"] = work(progress)
        except DeployStudioError as exc:
            outcome.update(state=OperationState.FAILED, error=str(exc))
            outcome["error_type"] = type(exc).__name__
        except Exception as exc:  # reported on the page; the traceback goes to the log only
            operation = entry.operation
            logger.exception("Operation %r on %s failed", operation.title, operation.subject)
            outcome.update(
                state=OperationState.FAILED,
                error=f"{type(exc).__name__}: {exc}. The app log has the details.",
                error_type=type(exc).__name__,
            )
        with entry.lock:
            entry.operation = replace(entry.operation, finished_at=datetime.now(UTC), **outcome)
        with self._lock:
            if self._running_by_subject.get(entry.operation.subject) == entry.operation.id:
                del self._running_by_subject[entry.operation.subject]

    def _forget_old(self) -> None:
        finished = [e for e in self._entries.values() if e.operation.done]
        for entry in finished[:-KEEP_FINISHED]:
            del self._entries[entry.operation.id]
