"""Who signs a change: the user an operation acts for (`acting_as`), else the OS user.

Apart from the store, which signs its audit entries with it, so that pages and the domain
can say who acts without reaching into the store."""

from __future__ import annotations

import contextvars
import getpass
from collections.abc import Iterator
from contextlib import contextmanager

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


def acting_now() -> str | None:
    """The user of the current `acting_as` context, or None outside one."""
    return _ACTING_AS.get()


def local_user() -> str:
    """The OS login name that signs changes made outside the app (CLI, servers)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in the environment nor in the password database
        return "unknown"
