"""Audit entries in plain words for people: "traffic of blue changed", before and after values
as short text rather than the stored JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deploystudio.deployment.base import AuditEntry

# What each stored action means, as a verb phrase on its target. Unknown actions fall back to
# the action's own words (underscores to spaces), so a new action still reads.
_PHRASES = {
    "create": "created",
    "delete": "deleted",
    "update": "changed",
    "set_state": "changed",
    "set_process": "started a server process for",
    "replace_process": "switched to a new server process for",
    "regenerate_key": "regenerated a key of",
    "update_failed": "update failed for",
    "reconcile": "squared records with running servers",
    "repair": "repaired",
    "stop_all": "stopped every server of",
    "batch_start": "started batch job",
    "batch_finish": "batch job finished:",
    "batch_cancel": "asked to cancel batch job",
}
_FIELDS = {
    "traffic": "traffic",
    "mirror": "mirrored traffic",
    "state": "state",
    "reason": "reason",
    "primary_key": "primary key",
    "secondary_key": "secondary key",
    "model_uri": "model",
    "description": "description",
}
_LIMIT = 160


def _kind(entry: AuditEntry) -> str:
    if entry.action.startswith("batch"):
        return "batch job"
    return "deployment" if "/" in entry.target else "endpoint"


def describe(entry: AuditEntry) -> str:
    """One sentence: 'Traffic of endpoint iris changed', 'Created deployment iris/blue'."""
    action = entry.action
    if action == "set_traffic" or (action in ("update", "set_state") and entry.field):
        field_name = _FIELDS.get(entry.field or "", (entry.field or "").replace("_", " "))
        return f"Changed the {field_name} of {_kind(entry)} {entry.target}"
    if action.startswith("azure "):
        return f"Azure: {action.removeprefix('azure ')} {entry.target}"
    phrase = _PHRASES.get(action, action.replace("_", " "))
    if action in ("reconcile", "repair", "stop_all"):
        return f"{phrase.capitalize()} ({entry.target} endpoints)"
    subject = entry.target if action.startswith("batch") else f"{_kind(entry)} {entry.target}"
    return f"{phrase[0].upper()}{phrase[1:]} {subject}"


def value_text(value: Any, field_name: str | None = None) -> str:
    """A stored before/after value as short plain text ('' for none)."""
    if value is None or value == {} or value == []:
        return ""
    if field_name == "traffic" and isinstance(value, Mapping):
        shares = [f"{name} {weight}%" for name, weight in value.items() if weight]
        return " · ".join(shares) or "no live traffic"
    if field_name == "mirror" and isinstance(value, list | tuple) and len(value) == 2:
        return f"{value[0]} {value[1]}%"
    if isinstance(value, Mapping):
        return _short(_mapping_text(value))
    if isinstance(value, list | tuple):
        return _short(", ".join(str(item) for item in value))
    return _short(str(value))


def _mapping_text(value: Mapping[str, Any]) -> str:
    if "pid" in value and "port" in value:
        return f"process {value['pid']} on port {value['port']}"
    parts = []
    for key, item in value.items():
        if item in (None, "", {}, []):
            continue
        if isinstance(item, Mapping):
            item = ", ".join(f"{k} {v}" for k, v in item.items())
        elif isinstance(item, list | tuple):
            item = ", ".join(str(i) for i in item)
        parts.append(f"{key.replace('_', ' ')}: {item}")
    return "; ".join(parts)


def _short(text: str) -> str:
    return text if len(text) <= _LIMIT else text[: _LIMIT - 1] + "…"
