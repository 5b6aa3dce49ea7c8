"""The one way the app shows a moment: local time to the minute, with how long ago it was.

Pages and tables used two formats (ISO with seconds and UTC offset, and "YYYY-MM-DD HH:mm");
every place that shows a time now goes through `format_time`.
"""

from __future__ import annotations

from datetime import UTC, datetime

FORMAT = "%Y-%m-%d %H:%M"


def ago(moment: datetime, now: datetime | None = None) -> str:
    """'just now', '5 min ago', '3 h ago', '2 days ago' ('in 5 min' for a future moment)."""
    now = now or datetime.now(UTC)
    seconds = (_aware(now) - _aware(moment)).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        return "just now"
    for size, unit in ((86400, "day"), (3600, "h"), (60, "min")):
        if seconds >= size:
            count = int(seconds // size)
            text = f"{count} {unit}" + ("s" if unit == "day" and count > 1 else "")
            return f"in {text}" if future else f"{text} ago"
    raise AssertionError("unreachable: seconds >= 60 here")


def format_time(moment: datetime | None, now: datetime | None = None) -> str:
    """'2026-12-05 06:03 (5 min ago)' in the server's local time; '' for no moment.

    Records are stored in UTC; a naive datetime is taken as UTC (MLflow's and our stores')."""
    if moment is None:
        return ""
    local = _aware(moment).astimezone()
    return f"{local.strftime(FORMAT)} ({ago(moment, now)})"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
