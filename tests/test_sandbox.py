"""The sandbox launcher on its own: real processes, no model (each runs in well under a second).

What each model-running path reaches with it is tested with a hostile model in
tests/reliability/test_hostile_model.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deploystudio.worker.isolation import scrubbed_environment
from deploystudio.worker.sandbox import (
    UNAVAILABLE_PREFIX,
    Access,
    landlock_abi,
    sandboxed_command,
)

needs_landlock = pytest.mark.skipif(not landlock_abi(), reason="the kernel has no Landlock")


def run_sandboxed(code: str, access: Access, cwd: Path) -> subprocess.CompletedProcess:
    command = sandboxed_command([sys.executable, "-c", textwrap.dedent(code)], access)
    return subprocess.run(
        command,
        env=scrubbed_environment(home=cwd, temp=cwd),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_access_covers_what_lies_within_it(tmp_path):
    wide = Access.of(read=[tmp_path / "models"], write=[tmp_path / "work"], bind_ports=[80])
    assert wide.covers(Access.of(read=[tmp_path / "models" / "a"]))
    assert wide.covers(Access.of(read=[tmp_path / "work" / "x"], write=[tmp_path / "work"]))
    assert not wide.covers(Access.of(read=[tmp_path / "other"]))
    assert not wide.covers(Access.of(write=[tmp_path / "models"]))
    assert not wide.covers(Access.of(bind_ports=[81]))
    assert (wide | Access.of(read=[tmp_path / "b"])).covers(Access.of(read=[tmp_path / "b"]))


@needs_landlock
def test_the_command_reads_and_writes_only_what_it_was_given(tmp_path):
    readable, writable, hidden = tmp_path / "model", tmp_path / "work", tmp_path / "store"
    for folder in (readable, writable, hidden):
        folder.mkdir()
        (folder / "file").write_text("x")
    result = run_sandboxed(
        f"""
        import os
        def attempt(action):
            try:
                action()
                return "ok"
            except OSError as exc:
                return type(exc).__name__
        print(attempt(lambda: open({str(readable / "file")!r}).read()))
        print(attempt(lambda: open({str(readable / "new")!r}, "w")))
        print(attempt(lambda: open({str(writable / "new")!r}, "w").write("y")))
        print(attempt(lambda: open({str(hidden / "file")!r}).read()))
        print(attempt(lambda: os.listdir({str(hidden)!r})))
        print(attempt(lambda: open(os.path.expanduser("~/../store/file")).read()))
        print(attempt(lambda: open(f"/proc/{{os.getppid()}}/environ", "rb").read()))
        print(attempt(lambda: open("/proc/self/maps").read()))
        """,
        Access.of(read=[readable], write=[writable]),
        writable,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "ok",
        "PermissionError",
        "ok",
        "PermissionError",
        "PermissionError",
        "PermissionError",
        "PermissionError",
        "ok",
    ]


@needs_landlock
def test_the_command_binds_only_its_own_port(tmp_path):
    own, other = free_port(), free_port()
    result = run_sandboxed(
        f"""
        import socket
        for port in ({own}, {other}):
            with socket.socket() as server:
                try:
                    server.bind(("127.0.0.1", port))
                    print("bound")
                except OSError as exc:
                    print(type(exc).__name__)
        """,
        Access.of(bind_ports=[own]),
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["bound", "PermissionError"]


def test_without_landlock_the_command_runs_and_its_log_says_so(tmp_path):
    """A kernel without Landlock (simulated): one line in the log, then the command as usual."""
    launcher = textwrap.dedent(
        """
        import sys
        from deploystudio.worker import sandbox
        sandbox.landlock_abi = lambda: 0
        sandbox.main(sys.argv[1:])
        """
    )
    command = [sys.executable, "-c", "print('ran')"]
    result = subprocess.run(
        [sys.executable, "-P", "-c", launcher, "--read", str(tmp_path), "--", *command],
        env=scrubbed_environment(home=tmp_path, temp=tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ran"
    assert result.stderr.count(UNAVAILABLE_PREFIX) == 1 and len(result.stderr.splitlines()) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="only a process run as root holds capabilities")
def test_a_root_launcher_leaves_the_command_no_capability(tmp_path):
    result = run_sandboxed(
        """
        for line in open("/proc/self/status"):
            if line.startswith(("CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh")):
                print(int(line.split()[1], 16))
        """,
        Access(),
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0"] * 5
