"""A value served stale while it is read again in the background (components/refreshing.py),
and the start-up warm-up of the pages' imports (components/warmup.py)."""

from __future__ import annotations

import threading
import time

from components import warmup
from components.refreshing import Refreshing


def test_first_get_does_not_wait_and_the_value_arrives_once():
    reads = []
    release = threading.Event()

    def read() -> int:
        release.wait(5)
        reads.append(1)
        return len(reads)

    value = Refreshing(read, ttl_seconds=60)
    assert value.get() is None  # answered at once, the read still blocked
    assert value.get() is None  # one read at a time
    release.set()
    assert value.wait(5) == 1
    assert value.get() == 1
    assert reads == [1]  # fresh: no second read


def test_an_old_value_is_served_while_it_is_read_again():
    release = threading.Event()
    calls = iter([1, 2])

    def read() -> int:
        number = next(calls)
        if number == 2:
            release.wait(5)
        return number

    value = Refreshing(read, ttl_seconds=0.05)
    assert value.wait(5) == 1
    time.sleep(0.1)
    assert value.get() == 1  # stale, served at once; the second read waits on `release`
    release.set()
    assert value.wait(5) == 2


def test_a_failed_read_keeps_nothing_and_the_next_get_retries():
    outcomes = iter([RuntimeError("registry down"), 7])

    def read() -> int:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    value = Refreshing(read, ttl_seconds=60)
    assert value.wait(5) is None
    assert value.wait(5) == 7


def test_warmup_reads_the_first_pages_imports():
    imports: dict[str, set[str]] = {}
    for module, names in warmup.page_imports():
        imports.setdefault(module, set()).update(names)
    assert "services" in imports["components"]
    assert "models_frame" in imports["components.tables"]
    # Azure's SDK is not among them: its page loads it on demand.
    assert not any(name.startswith("deploystudio.deployment.azure") for name in imports)
