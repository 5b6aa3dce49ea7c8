"""The environments in the data folder: list them, and prune those no one uses."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from deploystudio.environments.build import (
    FAILED,
    LAST_USED,
    LOG,
    MODELS,
    READY,
    environments_root,
)
from deploystudio.environments.plan import plans_folder

DAY = 86_400


@dataclass(frozen=True)
class EnvironmentRecord:
    key: str
    state: str  # "ready", "failed", "building", "unfinished" (a build that was killed)
    python_version: str
    packages: int
    size_bytes: int
    models: list[str]
    last_used: float | None  # seconds since the epoch
    log: Path
    reason: str = ""


def _size(folder: Path) -> int:
    """Bytes on disk, each file counted once: uv hard-links files from its cache, so a file
    shared by several environments is counted in each (the figure is what removing frees only
    when no other environment or the cache holds it)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path, _dirs, files in os.walk(folder):
        for name in files:
            try:
                stat = os.lstat(os.path.join(path, name))
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_blocks * 512
    return total


def _being_built(root: Path, key: str) -> bool:
    lock = root / f"{key}.lock"
    if not lock.exists():
        return False
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _read_json(path: Path, default: object) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def list_environments(home: Path) -> list[EnvironmentRecord]:
    root = environments_root(home)
    if not root.is_dir():
        return []
    records = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "plans"):
        ready = _read_json(folder / READY, None)
        failed = _read_json(folder / FAILED, None)
        plan = _read_json(folder / "plan.json", {})
        if isinstance(ready, dict):
            state, reason = "ready", ""
        elif _being_built(root, folder.name):
            state, reason = "building", ""
        elif isinstance(failed, dict):
            state, reason = "failed", str(failed.get("reason", ""))
        else:
            state, reason = "unfinished", "the build stopped before it finished"
        try:
            last_used = (folder / LAST_USED).stat().st_mtime
        except OSError:
            last_used = None
        python = (ready or {}).get("python_version") or (plan.get("python") or {}).get("used", "")
        models = _read_json(folder / MODELS, [])
        records.append(
            EnvironmentRecord(
                key=folder.name,
                state=state,
                python_version=str(python),
                packages=int((ready or {}).get("packages", 0)),
                size_bytes=_size(folder),
                models=list(models) if isinstance(models, list) else [],
                last_used=last_used,
                log=folder / LOG,
                reason=reason,
            )
        )
    return records


def prune(home: Path, unused_days: float = 30, dry_run: bool = False) -> list[EnvironmentRecord]:
    """Remove failed and unfinished builds, and ready environments not used for `unused_days`
    days; an environment being built is left alone. Returns what was (or would be) removed."""
    root = environments_root(home)
    cutoff = time.time() - unused_days * DAY
    removed = []
    for record in list_environments(home):
        stale = record.state in ("failed", "unfinished")
        unused = record.state == "ready" and (record.last_used or 0) <= cutoff
        if not (stale or unused):
            continue
        if not dry_run and not _remove(root, record.key):
            continue
        removed.append(record)
    if not dry_run and removed:
        _forget_plans(root, {r.key for r in removed})
    return removed


def _remove(root: Path, key: str) -> bool:
    """Remove one environment while holding its lock, so no build or use starts meanwhile."""
    with open(root / f"{key}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        # ready.json first: from then on the folder is not an environment, even half removed.
        with contextlib.suppress(FileNotFoundError):
            (root / key / READY).unlink()
        shutil.rmtree(root / key, ignore_errors=True)
        fcntl.flock(handle, fcntl.LOCK_UN)
    return True


def _forget_plans(root: Path, keys: set[str]) -> None:
    """Cached plans of removed environments go too: the model is planned afresh next time."""
    folder = plans_folder(root)
    if not folder.is_dir():
        return
    for path in folder.glob("*.json"):
        plan = _read_json(path, {})
        if isinstance(plan, dict) and (plan.get("plan") or {}).get("key") in keys:
            path.unlink(missing_ok=True)
