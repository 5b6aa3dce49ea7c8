"""The figures of the reliability suites: what each suite tried and what went wrong.

Suites add to one `Figures` per session; the terminal summary prints the table, and when
RELIABILITY_FIGURES names a file the figures are written there as JSON so that
`make reliability` can print the table as its last output (`python -m tests.reliability.figures`).
A column no suite measured is shown as "not measured yet", never as 0.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

COLUMNS = (
    "cases tried",
    "crashes",
    "5xx",
    "records lost or duplicated",
    "orphan processes",
    "leaked ports",
    "secret hits",
)
NOT_MEASURED = "not measured yet"


class Figures:
    """Counts per suite and column; thread-safe, since the front suite sends from threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows: dict[str, dict[str, int]] = {}

    def add(self, suite: str, column: str, amount: int = 1) -> None:
        if column not in COLUMNS:
            raise KeyError(f"unknown column {column!r}")
        with self._lock:
            row = self.rows.setdefault(suite, {})
            row[column] = row.get(column, 0) + amount

    def measured(self, suite: str, *columns: str) -> None:
        """Say that `suite` measures `columns`: a 0 there is then a real 0."""
        for column in columns:
            self.add(suite, column, 0)

    def merge(self, rows: dict[str, dict[str, int]]) -> None:
        """Add another process's figures (an xdist worker's, or an earlier run's file)."""
        for suite, row in rows.items():
            for column, amount in row.items():
                self.add(suite, column, int(amount))

    def as_plain(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {suite: dict(row) for suite, row in self.rows.items()}


# One per test process. Under pytest-xdist each worker counts its own and hands them to the
# controller at the end (tests/conftest.py), which prints the sum.
FIGURES = Figures()


def render(rows: dict[str, dict[str, int]]) -> str:
    total: dict[str, int] = {}
    for row in rows.values():
        for column, value in row.items():
            total[column] = total.get(column, 0) + value
    table = [("suite", *COLUMNS)]
    for suite in sorted(rows):
        table.append((suite, *(_cell(rows[suite], c) for c in COLUMNS)))
    table.append(("TOTAL", *(_cell(total, c) for c in COLUMNS)))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in table]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    lines.insert(len(lines) - 1, lines[1])
    return "\n".join(lines)


def _cell(row: dict[str, int], column: str) -> str:
    return str(row[column]) if column in row else NOT_MEASURED


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else None
    if path is None or not path.is_file():
        print(f"No figures at {path}: the reliability run did not get far enough to write them.")
        return 1
    print(render(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
