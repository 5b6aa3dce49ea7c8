"""The score.py editor: syntax highlighting, line numbers, and the line where validation failed
marked in the gutter and highlighted.

Why streamlit-code-editor (Ace through react-ace): of the maintained editor components on PyPI
it is the one whose wheel bundles its whole frontend (Ace's modes and themes included), so the
editor works with no internet, as the studio must. streamlit-monaco and streamlit-monaco-editor
load Monaco from a CDN at run time; streamlit-ace's last release is from 2021. Its `props` go to
react-ace as they are, which is how the error line is marked (Ace annotations and markers).

The script itself lives in session state under the panel's key; the editor is seeded with it
and sends back every edit (debounced, and on blur), which `edited_script` applies. A new
template changes the editor's key, so a fresh editor shows the new script.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import streamlit as st
from code_editor import code_editor

# The responses that carry the editor's text (the other events are selections and buttons).
TEXT_EVENTS = frozenset({"change", "blur", "submit"})
# Ace draws a marker as an absolutely placed box: its class needs a position and a colour.
ERROR_CLASS = "deploystudio-error-line"
EDITOR_CSS = f".{ERROR_CLASS} {{ position: absolute; background: rgba(255, 75, 75, 0.28); }}"
EDITOR_LINES = (24, 40)


def generation_key(key: str) -> str:
    """Where the panel counts the scripts it put into the editor (one per template choice)."""
    return f"{key}_generation"


def editor_key(key: str, generation: int) -> str:
    return f"{key}_editor_{generation}"


def edited_script(response: Mapping[str, Any] | None, current: str) -> str:
    """The script after the editor's last response: its text for an edit, else `current` (the
    editor's first value, before any edit, has an empty id)."""
    if not response or not response.get("id") or response.get("type") not in TEXT_EVENTS:
        return current
    text = response.get("text")
    return text if isinstance(text, str) else current


def error_marks(line: int | None, message: str, script: str) -> dict[str, Any]:
    """react-ace props that mark `line` (1-based) of `script`: a gutter annotation whose
    tooltip is `message`, and the whole line highlighted. None, or a line past the end (the
    script got shorter since), marks nothing."""
    rows = script.count("\n") + 1
    if line is None or not 1 <= line <= rows:
        return {"annotations": [], "markers": []}
    row = line - 1
    return {
        "annotations": [{"row": row, "column": 0, "type": "error", "text": message}],
        "markers": [
            {
                "startRow": row,
                "startCol": 0,
                "endRow": row,
                "endCol": 1,
                "className": ERROR_CLASS,
                "type": "fullLine",
            }
        ],
    }


@dataclass(frozen=True)
class MarkedFailure:
    """Where a validation failed: marked only while the editor holds the script it validated
    (after an edit, the line may have moved)."""

    script: str
    line: int
    message: str


def render_script_editor(key: str, script_key: str, failure: MarkedFailure | None = None) -> str:
    """Show the editor for the script in `st.session_state[script_key]`; return the script as
    edited (and store it back there)."""
    generation = st.session_state.setdefault(generation_key(key), 0)
    widget = editor_key(key, generation)
    seed_key = f"{widget}_seed"
    # The editor is given the text it started with on every rerun: a changing `code` argument
    # would make the component re-render (and Ace keep or lose the cursor) on each keystroke.
    seed = st.session_state.setdefault(seed_key, st.session_state[script_key])
    # The edit that caused this rerun is already in the widget's state: the marks are for it.
    current = edited_script(st.session_state.get(widget), st.session_state[script_key])
    marked = failure is not None and failure.script == current
    st.markdown("**score.py**")
    response = code_editor(
        seed,
        lang="python",
        height=list(EDITOR_LINES),
        response_mode=["debounce", "blur"],
        props=(
            error_marks(failure.line, failure.message, current)
            if marked and failure is not None
            else error_marks(None, "", current)
        ),
        options={"showLineNumbers": True, "tabSize": 4, "useSoftTabs": True},
        component_props={"globalCSS": EDITOR_CSS},
        key=editor_key(key, generation),
    )
    script = edited_script(response, current)
    st.session_state[script_key] = script
    return script


def replace_script(key: str, script_key: str, script: str) -> None:
    """Put a new script (a template's) into the editor: a new editor instance shows it."""
    st.session_state[script_key] = script
    st.session_state[generation_key(key)] = st.session_state.get(generation_key(key), 0) + 1
