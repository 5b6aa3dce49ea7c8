"""Keys at rest: the deployment store (and SQLite's -wal/-shm beside it) is readable by the
studio's user only, inside a data folder only that user can enter."""

from __future__ import annotations

import os
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

from deploystudio.deployment.store import DeploymentStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_store_its_wal_files_and_its_data_folder_are_private(tmp_path):
    old = os.umask(0o022)  # the usual umask, which would give 0644 files and 0755 folders
    try:
        home = tmp_path / "studio"
        store = DeploymentStore(home / "deployments.db")
        store.create_endpoint("keyed-ep")
        assert store.get_keys("keyed-ep").primary
        # Hold a connection with an open write so the -wal and -shm files exist while checked.
        with closing(sqlite3.connect(home / "deployments.db")) as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE endpoints SET description = 'x'")
            files = {p.name: mode(p) for p in home.iterdir()}
            conn.execute("ROLLBACK")
    finally:
        os.umask(old)
    assert files == {
        "deployments.db": 0o600,
        "deployments.db-wal": 0o600,
        "deployments.db-shm": 0o600,
    }
    assert mode(home) == 0o700


def test_an_existing_open_data_folder_and_store_are_tightened(tmp_path):
    home = tmp_path / "shared"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    DeploymentStore(home / "deployments.db").create_endpoint("keyed-ep")
    os.chmod(home / "deployments.db", 0o644)  # e.g. copied in from a backup
    DeploymentStore(home / "deployments.db")
    assert mode(home) == 0o700
    assert mode(home / "deployments.db") == 0o600
