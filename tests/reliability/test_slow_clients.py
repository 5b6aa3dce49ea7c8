"""Slow and heavy clients against a real endpoint front, on 127.0.0.1 only.

Before: a connection that dribbled its headers was held for as long as it liked (300 of them
for 90 s), and a 100 MB body took the front to 440 MB (four at once: 967 MB). Now headers and
body have a deadline, a body costs about its size once, and at most two large bodies are held
at once. The front here runs with short deadlines so that the suite stays fast.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.reliability.conftest import LONG
from tests.reliability.figures import FIGURES
from tests.reliability.front_setup import FrontSetup, running_front
from tests.test_front import Client

SUITE = "slow clients"
HEADER_SECONDS = 2.0
BODY_SECONDS = 3.0
CONNECTIONS = 300 if LONG else 100
BIG = 40 * 1024 * 1024
MAX_BODY = BIG + 1024


@pytest.fixture(scope="module")
def front(settings, registry, seeded, tmp_path_factory):
    FIGURES.measured(SUITE, "cases tried", "crashes", "5xx", "orphan processes", "leaked ports")
    root = tmp_path_factory.mktemp("slow-clients")
    args = ("--header-seconds", str(HEADER_SECONDS), "--body-seconds", str(BODY_SECONDS))
    with running_front(
        settings, registry, root, SUITE, *args, "--max-body-bytes", str(MAX_BODY)
    ) as setup:
        yield setup


def dribble(port: int, first: bytes, more: bytes, within: float) -> tuple[int, float]:
    """Open CONNECTIONS connections that send `first`, then `more` every 0.5 s; return how many
    the front closed within `within` seconds, and when the last of them was closed."""
    selector = selectors.DefaultSelector()
    socks = []
    try:
        for _ in range(CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(first)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            socks.append(sock)
            FIGURES.add(SUITE, "cases tried")
        started = time.monotonic()
        open_socks, last_closed, next_drip = set(socks), 0.0, started + 0.5
        while open_socks and time.monotonic() - started < within:
            for key, _ in selector.select(timeout=0.1):
                sock = key.fileobj
                try:
                    data = sock.recv(65536)
                except ConnectionError:
                    data = b""
                if data.split(b" ")[1:2] and data.split(b" ")[1].startswith(b"5"):
                    FIGURES.add(SUITE, "5xx")
                if not data or b"\r\n\r\n" in data:
                    selector.unregister(sock)
                    open_socks.discard(sock)
                    last_closed = time.monotonic() - started
            if time.monotonic() >= next_drip:
                next_drip += 0.5
                for sock in list(open_socks):
                    with contextlib.suppress(BlockingIOError, ConnectionError):
                        sock.send(more)
        return CONNECTIONS - len(open_socks), last_closed
    finally:
        for sock in socks:
            sock.close()
        selector.close()


def good_request(front: FrontSetup) -> int:
    client = Client(front.port)
    try:
        headers = {"Authorization": f"Bearer {front.key}", "Content-Type": "application/json"}
        return client.request("POST", "/score", json.dumps(front.body).encode(), headers).status
    finally:
        client.close()


def test_slow_headers_are_closed_after_the_header_deadline(front):
    statuses: list[int] = []
    # A scoring request in the middle of the slow ones is served as usual.
    later = threading.Timer(0.5, lambda: statuses.append(good_request(front)))
    later.start()
    closed, last = dribble(front.port, b"POST /score HTTP/1.1\r\nHost: x\r\n", b"X-A: b\r\n", 15)
    later.join()
    assert closed == CONNECTIONS and last < HEADER_SECONDS + 3, (closed, last)
    assert statuses == [200]
    assert front.count_crashes(SUITE) == 0


def test_a_slow_body_is_408_after_the_body_deadline(front):
    head = (
        f"POST /score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {front.key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    closed, last = dribble(front.port, head + b"[", b"1,", 15)
    assert closed == CONNECTIONS and last < BODY_SECONDS + 3, (closed, last)
    assert good_request(front) == 200


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def reset_peak(pid: int) -> int:
    """Reset the process's peak RSS to its current RSS (Linux: clear_refs 5); return it."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak_rss(pid)


def send_big(port: int, key: str, statuses: list[int]) -> None:
    client = Client(port)
    try:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        # Not JSON: the scoring script refuses it after the server read all of it.
        statuses.append(client.request("POST", "/score", BIG_BODY, headers).status)
    finally:
        client.close()


BIG_BODY = b"x" * BIG


def test_a_large_body_costs_about_its_size_once(front):
    base = reset_peak(front.front.pid)
    statuses: list[int] = []
    send_big(front.port, front.key, statuses)
    one = peak_rss(front.front.pid) - base
    FIGURES.add(SUITE, "cases tried")
    # Before: 4.4 times the body.
    assert one < 1.6 * BIG, one / BIG
    base = reset_peak(front.front.pid)
    threads = [
        threading.Thread(target=send_big, args=(front.port, front.key, statuses)) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    four = peak_rss(front.front.pid) - base
    FIGURES.add(SUITE, "cases tried", 4)
    FIGURES.add(SUITE, "5xx", sum(s >= 500 for s in statuses))
    # Two bodies held at once at most (before: 9.7 times one body for four).
    assert four < 3.2 * BIG, four / BIG
    assert len(statuses) == 5 and all(s < 500 for s in statuses), statuses
    assert good_request(front) == 200
