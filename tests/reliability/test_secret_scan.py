"""Runs after every other test of the session (see conftest.py): no endpoint key and nothing
token-like in any log written under the session's folders."""

from __future__ import annotations

import os
import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from tests.reliability.figures import FIGURES

SUITE = "secret scan"
TOKEN_PATTERNS = (
    re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),  # a JWT
    re.compile(rb"Bearer\s+[A-Za-z0-9._~+/=-]{16,}"),
)


def stored_keys(base: Path) -> set[str]:
    """Every endpoint key held by every deployment store of the session.

    Read straight from the files, read-only: opening them through DeploymentStore would refuse
    the ones tests leave at a newer schema or corrupt on purpose, and could write to them.
    """
    keys: set[str] = set()
    for db in base.rglob("deployments.db"):
        try:
            with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                rows = conn.execute("SELECT primary_key, secondary_key FROM endpoint_keys")
                keys.update(key for pair in rows for key in pair if key)
        except sqlite3.Error:
            continue  # a store without the table, or left corrupt on purpose, holds no key
    return keys


def log_files(base: Path) -> list[Path]:
    return sorted(
        p
        for p in base.rglob("*")
        if p.is_file()
        and (p.suffix == ".log" or "log" in p.parent.name.lower())
        # A store is where keys belong, whatever folder it sits in (a test's "log-flood0").
        and ".db" not in p.name
    )


def test_no_key_or_token_in_any_log_of_the_session(tmp_path_factory):
    # `make test` runs the other tests in parallel first and points this at their folders.
    root = os.environ.get("SECRET_SCAN_ROOT")
    base = Path(root) if root else tmp_path_factory.getbasetemp()
    keys = stored_keys(base)
    logs = log_files(base)
    if not logs:
        pytest.skip("No log was written in this session: run the scan with the other suites.")
    FIGURES.measured(SUITE, "cases tried", "secret hits")
    hits = []
    for path in logs:
        text = path.read_bytes()
        FIGURES.add(SUITE, "cases tried")
        found = [k for k in keys if k.encode() in text]
        found += [
            m.group()[:12].decode(errors="replace") + "..."
            for pattern in TOKEN_PATTERNS
            for m in pattern.finditer(text)
        ]
        if found:
            hits.append(f"{path.relative_to(base)}: {len(found)} hit(s)")
            FIGURES.add(SUITE, "secret hits", len(found))
    # The message names files and counts only: printing a key here would leak it too.
    assert not hits, f"Secrets in logs ({len(keys)} keys looked for): " + "; ".join(hits)
