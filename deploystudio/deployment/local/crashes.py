"""Crashes of a deployment's server while it starts, read from its log (issue 19, part 5).

A model whose load crashes its worker (a native abort, an unreadable LightGBM file) makes
gunicorn (Azure ML's inference server, MLflow 2) and uvicorn's supervisor (MLflow 3 with
several workers) start a new worker, which crashes the same way, until the start timeout. Their
logs say so, line by line: the second death means the model will not load, so the start fails
then, naming the crash. The server is detached (not our child), so its exit status cannot be
waited for: the signal comes from gunicorn's line or from faulthandler's "Fatal Python error".
"""

from __future__ import annotations

import re
from pathlib import Path

from deploystudio.customization.scoring_script import exception_line
from deploystudio.environments.diagnosis import skew_advice
from deploystudio.environments.sources import PlanInputs
from deploystudio.errors import DeployStudioError

# A worker's death, as the servers log it: gunicorn's two forms, then uvicorn's supervisor's.
_DEATHS = (
    re.compile(r"Worker \(pid:(\d+)\) was sent (SIG\w+)!"),
    re.compile(r"Worker \(pid:(\d+)\) exited with code (\d+)"),
    re.compile(r"Child process \[(\d+)\] died"),
)
# faulthandler's first line (Python's own wording) -> the signal.
_FATAL = {
    "Aborted": "SIGABRT",
    "Segmentation fault": "SIGSEGV",
    "Bus error": "SIGBUS",
    "Illegal instruction": "SIGILL",
    "Floating point exception": "SIGFPE",
}
_FATAL_LINE = re.compile(r"Fatal Python error: (" + "|".join(_FATAL) + ")")
_NATIVE = frozenset(_FATAL.values())
_NATIVE_WHY = (
    "a native crash, in compiled code: often a library built for other versions of numpy or of "
    "the packages beside it, or a model file the library cannot read"
)
# gunicorn's SIGTERM is its own graceful stop of a worker, not a crash.
_NOT_CRASHES = frozenset({"SIGTERM"})


def _signal_words(name: str) -> str:
    if name in _NATIVE:
        return f"killed by {name} ({_NATIVE_WHY})"
    if name == "SIGKILL":
        return "killed by SIGKILL (often out of memory)"
    return f"killed by {name}"


def native_crash(log: str) -> str | None:
    """`killed by SIGABRT (...)` when faulthandler wrote a fatal error in `log`, else None."""
    found = _FATAL_LINE.search(log)
    return _signal_words(_FATAL[found.group(1)]) if found else None


class CrashWatch:
    """Reads a starting server's log as it grows and counts its workers' deaths."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._offset = 0
        self._partial = ""
        self._text: list[str] = []
        self.deaths: list[str] = []  # how each died: "killed by SIGABRT", "exited with code 1"
        # faulthandler's lines: one per worker killed by a native crash, also where the
        # supervisor has not noticed yet (uvicorn checks its workers every few seconds).
        self.fatal: list[str] = []

    def _read(self) -> None:
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except OSError:
            return
        self._offset += len(chunk)
        lines = (self._partial + chunk.decode(errors="replace")).split("\n")
        self._partial = lines.pop()  # an unfinished last line waits for its end
        self._text.extend(lines)
        for line in lines:
            fatal = _FATAL_LINE.search(line)
            if fatal:
                self.fatal.append(_signal_words(_FATAL[fatal.group(1)]))
            for pattern in _DEATHS:
                found = pattern.search(line)
                if not found:
                    continue
                how = found.group(2) if pattern.groups == 2 else None
                if how in _NOT_CRASHES:
                    break
                if how is None:
                    self.deaths.append("died")
                elif how.isdigit():
                    self.deaths.append(f"exited with code {how}")
                else:
                    self.deaths.append(_signal_words(how))
                break

    def repeated(self) -> str | None:
        """What a crash loop looks like once a worker died a second time, else None."""
        self._read()
        count = max(len(self.deaths), len(self.fatal))
        if count < 2:
            return None
        how = self.deaths[-1] if self.deaths else self.fatal[-1]
        if how == "died" and self.fatal:  # uvicorn does not say how: faulthandler did
            how = self.fatal[-1]
        how = f"was {how}" if how.startswith("killed") else how
        raised = exception_line("\n".join(self._text))
        also = f" It raised: {raised}" if raised else ""
        return f"its workers crashed {count} times while loading; the last one {how}.{also}"


def start_failure(message: str, log_path: Path, model_path: Path, in_app: bool) -> str:
    """The reason of a failed start: the first line of `message`, what the model raised or
    the signal that killed it, and, in the app's environment, version skew if it looks so."""
    try:
        log = log_path.read_text(errors="replace")
    except OSError:
        log = ""
    summary = message.strip().splitlines()[0] if message.strip() else message
    raised = exception_line(log)
    if raised and raised not in summary:
        summary = f"{summary} It raised: {raised}"
    crash = native_crash(log)
    if crash and "killed by" not in summary:
        summary = f"{summary} It was {crash}."
    if in_app:
        try:
            advice = skew_advice(f"{message}\n{log}", PlanInputs.from_folder(model_path))
        except DeployStudioError:  # no MLmodel (a scoring script's own model): nothing to say
            advice = None
        if advice:
            summary = f"{summary} {advice}"
    return summary
