"""One line of a report on a model: what was checked, how it went, and what to do about it.
The deployability report (`inspection.py`, `environment_report.py`) and the prediction checks
share it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class CheckStatus(Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    """One line of the deployability report; `fix` says what to do when it is not a pass."""

    name: str
    status: CheckStatus
    detail: str
    fix: str = ""
