"""What the fault-injection suite needs besides the code under test: kill processes, find what
outlived them (by reading /proc: psutil is not a dependency), and count what it found.

Every count goes to the figures table under the scenario's suite name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from deploystudio.errors import DeployStudioError
from tests.reliability.figures import FIGURES

# Columns every fault scenario measures (a 0 there is a real 0).
FAULT_COLUMNS = (
    "cases tried",
    "crashes",
    "records lost or duplicated",
    "orphan processes",
    "leaked ports",
)
# How long a process may take to go after its parent or group leader was killed.
SETTLE_SECONDS = 10.0

# A model from code (MLflow's models-from-code), so servers and workers import nothing from the
# tests: "slow" rows sleep, so a kill can land while a request or a mini-batch is in progress.
SLEEPY_MODEL = """
import time

import mlflow
from mlflow.pyfunc import PythonModel


class Sleepy(PythonModel):
    def predict(self, context, model_input, params=None):
        for mode in model_input["mode"]:
            if mode == "slow":
                time.sleep(1.5)
        return (model_input["x"] * 2).to_numpy()


mlflow.models.set_model(Sleepy())
"""


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    command: str


def processes() -> list[ProcInfo]:
    """Every live (non-zombie) process: /proc/<pid>/stat and cmdline."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fields[0] != "Z":
            found.append(ProcInfo(int(entry.name), int(fields[1]), int(fields[2]), command))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def group_members(pgid: int) -> list[int]:
    return [p.pid for p in processes() if p.pgid == pgid]


def children(pid: int) -> list[ProcInfo]:
    return [p for p in processes() if p.ppid == pid]


def processes_under(root: Path) -> list[int]:
    """Live processes whose working folder is under `root` (servers, fronts, batch runners)."""
    root = root.resolve()
    found = []
    for info in processes():
        with contextlib.suppress(OSError):
            if Path(os.readlink(f"/proc/{info.pid}/cwd")).is_relative_to(root):
                found.append(info.pid)
    return found


def accepts(port: int | None) -> bool:
    """Whether something still listens on 127.0.0.1:`port`."""
    if port is None:
        return False
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def listeners(port: int) -> list[int]:
    """The processes holding a socket that listens on 127.0.0.1:`port` (read from /proc)."""
    wanted = f"0100007F:{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return []
    inodes = {
        f"socket:[{fields[9]}]"
        for fields in (line.split() for line in lines)
        if fields[1] == wanted and fields[3] == "0A"  # 0A: LISTEN
    }
    holders = []
    for info in processes():
        with contextlib.suppress(OSError):
            if {os.readlink(fd) for fd in Path(f"/proc/{info.pid}/fd").iterdir()} & inodes:
                holders.append(info.pid)
    return holders


def _under(pid: int, root: Path) -> bool:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")).is_relative_to(root.resolve())
    except OSError:
        return True  # gone or unreadable: cannot tell it is not ours


def wait_for(condition: Callable[[], object], seconds: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


def kill9(pid: int) -> None:
    """kill -9 one process (not its group: what outlives it is part of the test)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def kill9_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


@dataclass
class Tally:
    """One scenario's counts, added to the figures as they are found; `problems` says what each
    non-zero count was, for the assertion message."""

    suite: str
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        FIGURES.measured(self.suite, *FAULT_COLUMNS)

    def case(self) -> None:
        FIGURES.add(self.suite, "cases tried")

    def count(self, column: str, amount: int, what: str) -> None:
        if amount:
            FIGURES.add(self.suite, column, amount)
            self.problems.append(f"{column} +{amount}: {what}")

    def crash(self, what: str) -> None:
        self.count("crashes", 1, what)

    def outcome(self, call: Callable[[], object], what: str) -> object | DeployStudioError | None:
        """Run `call`: its value, or the DeployStudioError it raised (an answer the user can
        act on); any other exception counts as a crash and gives None."""
        try:
            return call()
        except DeployStudioError as exc:
            return exc
        except Exception as exc:
            self.crash(f"{what}: {type(exc).__name__}: {exc}")
            return None

    def orphans(self, pids: Iterable[int], what: str, seconds: float = SETTLE_SECONDS) -> None:
        """Count `pids` still alive after `seconds` (killing them then, so none outlives us)."""
        pids = list(pids)
        wait_for(lambda: not any(alive(p) for p in pids), seconds, 0.1)
        left = [p for p in pids if alive(p)]
        for pid in left:
            kill9(pid)
        self.count("orphan processes", len(left), f"{what}: {left}")

    def ports(
        self,
        ports: Iterable[int | None],
        what: str,
        ours: Path | None = None,
        settle: float = 0.0,
    ) -> None:
        """Count ports something still listens on (after up to `settle` seconds: the threads
        of a killed process close its files a moment after /proc shows it a zombie). With
        `ours`, only those held by a process working under `ours` (or by none that can be
        found): on a shared machine another program may take a freed port a moment later,
        which is no leak of ours."""
        ports = list(ports)
        wait_for(lambda: not any(accepts(p) for p in ports), settle, 0.1)
        open_ = [p for p in ports if accepts(p)]
        if ours is not None:
            held = {p: listeners(p) for p in open_}
            open_ = [p for p in open_ if not held[p] or any(_under(pid, ours) for pid in held[p])]
            what = f"{what} (held by {held})"
        self.count("leaked ports", len(open_), f"{what}: {open_}")

    def records(self, expected: Iterable[str], found: Iterable[str], what: str) -> None:
        """Compare the names of records created with those in the store (ignoring case)."""
        expected = sorted(n.lower() for n in expected)
        found = sorted(n.lower() for n in found)
        lost = [n for n in set(expected) if n not in found]
        duplicated = [n for n in set(found) if found.count(n) > 1]
        self.count(
            "records lost or duplicated",
            len(lost) + len(duplicated),
            f"{what}: lost {lost}, duplicated {duplicated}",
        )

    def check(self) -> None:
        assert not self.problems, "\n".join(self.problems)
