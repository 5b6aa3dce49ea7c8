"""How an endpoint's front process runs: where it may listen, and on which event loop."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable

from deploystudio.errors import EndpointFrontError


def check_loopback(host: str) -> None:
    """EndpointFrontError unless `host` is a loopback address: the front serves this machine."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise EndpointFrontError(
            f"The endpoint front only listens on this machine (127.0.0.1), not on {host!r}."
        )


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed, else None (asyncio's own).

    Why uvloop: the front is one event loop doing little per request but many syscalls and
    callbacks, which libuv's loop runs in C; aiohttp and the upstream client (upstream.py) run on it
    unchanged. Optional, so that a machine without it still serves, only slower.
    """
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
