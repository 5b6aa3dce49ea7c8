"""Malformed requests against a real endpoint front: its log stays small and it keeps serving.

Before the front bounded its log, 300 such requests of 128 KB added 38.5 MB to front.log (a
traceback and the request's bytes each). Every request here goes to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import logging
import socket

import pytest

from deploystudio.deployment.local import front_logging
from tests.reliability.conftest import LONG
from tests.reliability.figures import FIGURES
from tests.reliability.front_setup import running_front
from tests.test_front import Client

SUITE = "log flood"
REQUESTS = 1000 if LONG else 300
QUOTED = 128 * 1024
MARKER = b"FLOODMARK"
# Ten short records per source and window, one note: far below this.
MAX_GROWTH_BYTES = 64 * 1024


def malformed(index: int) -> bytes:
    """A request aiohttp's parser refuses, quoting up to 128 KB of it, without a key."""
    filler = MARKER * (QUOTED // len(MARKER))
    kinds = (
        b"POST /score HTTP/1.1\r\nHost: x\r\nX-Fill: " + filler + b"\r\n\r\n",
        b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz" + filler,
        b"GET /\x01" + filler + b" HTTP/1.1\r\n\r\n",
        b"POST /score HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + filler,
    )
    return kinds[index % len(kinds)]


def send_raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with_answer = b""
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                with_answer += chunk
        except ConnectionError:
            pass  # the front may close before reading everything: that is a refusal too
        return with_answer


@pytest.fixture(scope="module")
def front(settings, registry, seeded, tmp_path_factory):
    FIGURES.measured(SUITE, "cases tried", "crashes", "5xx", "orphan processes", "leaked ports")
    with running_front(settings, registry, tmp_path_factory.mktemp("log-flood"), SUITE) as setup:
        yield setup


def test_malformed_requests_add_little_to_the_front_log(front):
    before = front.front_log.stat().st_size
    for index in range(REQUESTS):
        FIGURES.add(SUITE, "cases tried")
        answer = send_raw(front.port, malformed(index))
        status_line = answer.split(b"\r\n", 1)[0]
        if status_line.split(b" ")[1:2] and status_line.split(b" ")[1].startswith(b"5"):
            FIGURES.add(SUITE, "5xx")
    grown = front.front_log.stat().st_size - before
    text = front.front_log.read_text(errors="replace")
    assert grown < MAX_GROWTH_BYTES, (grown, text[-3000:])
    assert "Traceback" not in text
    # What the parser quoted is cut to a short prefix.
    assert max(line.count(MARKER.decode()) for line in text.splitlines()) <= 30
    assert front.count_crashes(SUITE) == 0
    client = Client(front.port)
    try:
        headers = {"Authorization": f"Bearer {front.key}", "Content-Type": "application/json"}
        good = client.request("POST", "/score", json.dumps(front.body).encode(), headers)
    finally:
        client.close()
    assert good.status == 200, good


# -- the pieces, in this process ---------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def parse_error(source: str) -> logging.LogRecord:
    try:
        raise ValueError("Got more than 8190 bytes: b'" + "a" * 100_000 + "'")
    except ValueError as exc:
        return logging.LogRecord(
            "aiohttp.server",
            logging.ERROR,
            __file__,
            1,
            "Error handling request from %s",
            (source,),
            (type(exc), exc, exc.__traceback__),
        )


def test_records_are_short_and_rate_limited_per_source():
    clock = FakeClock()
    limit = front_logging.RequestRecordLimit(per_source=3, window_seconds=10, clock=clock)
    kept = [limit.filter(parse_error("10.0.0.1")) for _ in range(5)]
    assert kept == [True, True, True, False, False]
    assert limit.filter(parse_error("10.0.0.2"))  # another source has its own allowance
    record = parse_error("10.0.0.1")
    clock.now = 11
    assert limit.filter(record)
    message = record.getMessage()
    assert "2 more records from 10.0.0.1 were left out" in message
    assert record.exc_info is None and len(message) < 2 * front_logging.MAX_QUOTED_CHARS + 200


def test_the_log_rotates_and_stays_within_its_files(tmp_path):
    path = tmp_path / "front.log"
    level = logging.getLogger().level
    handler = front_logging.configure("INFO", path, max_bytes=20_000, backups=2)
    logger = logging.getLogger("deploystudio.front.test-rotation")
    try:
        for index in range(2000):
            logger.info("line %d %s", index, "x" * 200)
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(level)
        handler.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["front.log", "front.log.1", "front.log.2"]
    assert all(f.stat().st_size <= 20_000 for f in files)
    assert "line 1999" in path.read_text()
