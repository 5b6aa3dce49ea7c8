"""The OS-level barrier around model code: a launcher that restricts itself, then runs the command.

    python -P -m deploystudio.worker.sandbox --read DIR ... --write DIR ... --bind PORT -- ARGV...

It applies a Landlock ruleset to itself and `execv`s ARGV, so the restriction holds for the model
process and everything it starts (Landlock domains are inherited across fork and exec and cannot
be lifted). Callers build that command with `sandboxed_command`; the app never restricts itself,
and no `preexec_fn` runs in the threaded app.

Why Landlock: it needs no privilege (users run `make run` as an ordinary user), no setuid helper
and no user namespaces (which `bubblewrap` needs, and many hosts and containers turn off), and a
dedicated OS user would need root to create and to switch to. Landlock is in every Linux since
5.13; where it is missing (another OS, an old kernel, an LSM list without it) the launcher says so
in one line of the process's log and runs the command anyway: the allow-listed environment
(`deploystudio.worker.isolation`) then is the only barrier, and model code can read whatever the
app's user can.

What the process may do once restricted:
- read (and execute) the Python installation and environment in use, the `deploystudio` package
  folder (not the repository around it: `.streamlit/secrets.toml` lives there), the system
  folders programs need (/usr, /lib*, /bin, a list of /etc files, /proc, /sys), and the roots the
  caller names (the model folder, a scoring script's folder, batch inputs, model environments);
- write the roots the caller names (its work folder and private temp folder); its log is an open
  file descriptor, which Landlock does not check;
- read and write /dev/null, /dev/zero, the random devices, and /dev/shm (POSIX semaphores of
  `multiprocessing`, which joblib and scikit-learn's `n_jobs` use);
- bind only the TCP ports the caller names (a server's own port), where the kernel handles
  network rules (Landlock ABI 4); outgoing connections stay allowed: model code may call APIs;
- not signal or ptrace processes outside its domain (signals and abstract Unix sockets from
  Landlock ABI 6), which keeps other processes' /proc/PID/environ (the app's secrets), mem and fd
  out of reach; run as root, the launcher first drops every capability, without which root
  would pass that ptrace rule (and read any file its mode allows root).
Everything else, the data folder (deployments.db, mlflow.db, keys, bundles), the user's home and
the app's secrets file, is refused with EACCES.

The Landlock system calls come from `landlockpy` (a small pure-Python binding, 0BSD) rather than
our own ctypes: it covers file system, network and scope rules and drops, per running kernel, the
rights that kernel does not know (best effort), which is the part easy to get wrong.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import shutil
import site
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

LAUNCHER_MODULE = "deploystudio.worker.sandbox"
UNAVAILABLE_PREFIX = "deploystudio sandbox: Landlock is not available"

log = logging.getLogger("deploystudio.sandbox")

# System folders that programs read and run. /lib* are links to /usr/lib* on merged-/usr systems;
# a rule on a link applies to what it points to, so listing both is harmless.
SYSTEM_EXEC_ROOTS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Kernel views. Other processes' /proc/PID (mem, fd, environ: the app's and the user's shell's
# variables) stay out of reach through Landlock's ptrace rule, which holds for a process without
# CAP_SYS_PTRACE: so a launcher running as root drops its capabilities (`drop_capabilities`).
SYSTEM_READ_ROOTS = ("/proc", "/sys")
# Only these of /etc: what the loader, name resolution, TLS, time zones and user lookups read.
# Not all of /etc: a process running as root (as in containers) could read /etc/shadow and keys.
ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "hosts",
    "host.conf",
    "resolv.conf",
    "nsswitch.conf",
    "gai.conf",
    "services",
    "protocols",
    "passwd",
    "group",
    "mime.types",
    "os-release",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "matplotlibrc",
)
# Devices every process expects; /dev as a whole would let a root process read disks.
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/shm")


@dataclass(frozen=True)
class Access:
    """What one sandboxed process may reach besides the system: folders (or files) to read, to
    write (and read), and TCP ports to bind."""

    read: tuple[Path, ...] = ()
    write: tuple[Path, ...] = ()
    bind_ports: tuple[int, ...] = ()

    @classmethod
    def of(
        cls,
        read: Iterable[Path | str] = (),
        write: Iterable[Path | str] = (),
        bind_ports: Iterable[int] = (),
    ) -> Access:
        return cls(
            tuple(dict.fromkeys(Path(p).resolve() for p in read)),
            tuple(dict.fromkeys(Path(p).resolve() for p in write)),
            tuple(dict.fromkeys(int(p) for p in bind_ports)),
        )

    def __or__(self, other: Access) -> Access:
        return Access.of(
            (*self.read, *other.read),
            (*self.write, *other.write),
            (*self.bind_ports, *other.bind_ports),
        )

    def covers(self, other: Access) -> bool:
        """Whether a process restricted to this access can do all that `other` allows."""
        return (
            all(_within(p, (*self.read, *self.write)) for p in other.read)
            and all(_within(p, self.write) for p in other.write)
            and set(other.bind_ports) <= set(self.bind_ports)
        )


def _within(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def landlock_abi() -> int:
    """The running kernel's Landlock ABI version; 0 where there is no Landlock."""
    if not sys.platform.startswith("linux"):
        return 0  # elsewhere system call 444 is another call, or none
    try:
        import landlockpy

        return landlockpy.abi_version()
    except Exception:  # not Linux, no libc syscall(), a kernel that refuses: no barrier
        return 0


_warned = False


def sandboxed_command(argv: Sequence[str], access: Access) -> list[str]:
    """The command that runs `argv` behind the barrier with `access`. Write roots that do not
    exist are created here as folders (the restricted process could not create them)."""
    global _warned
    if not _warned and landlock_abi() == 0:
        _warned = True
        log.warning(
            "Landlock is not available on this system: model code runs with an allow-listed "
            "environment only, and can read what this user can."
        )
    for folder in access.write:
        if not folder.exists():
            folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-P", "-m", LAUNCHER_MODULE]
    for path in access.read:
        command += ["--read", str(path)]
    for path in access.write:
        command += ["--write", str(path)]
    for port in access.bind_ports:
        command += ["--bind", str(port)]
    return [*command, "--", *argv]


# ----------------------------------------------------------------------------- launcher side


def python_read_roots() -> list[Path]:
    """The Python installation(s) and environment this interpreter imports from, and the
    deploystudio package folder, but never a folder that holds that package folder (an
    old-style development install puts the repository root on sys.path, and
    `.streamlit/secrets.toml` lives there)."""
    package = Path(__file__).resolve().parents[1]
    roots = [
        Path(p)
        for p in (
            sys.prefix,
            sys.base_prefix,
            sys.exec_prefix,
            sys.base_exec_prefix,
            *sysconfig.get_paths().values(),
            *site.getsitepackages(),
            *sys.path,
        )
        if p
    ]
    if site.ENABLE_USER_SITE and site.getusersitepackages() in sys.path:
        roots.append(Path(site.getusersitepackages()))
    # Nor a folder that holds the user's home (a Python installed as /, or as the home itself).
    home = Path.home().resolve()
    kept = [package]
    for root in roots:
        resolved = root.resolve()
        if resolved.exists() and resolved not in package.parents and resolved not in (
            home,
            *home.parents,
        ):
            kept.append(resolved)
    # The interpreter itself may be a link out of the environment (a venv's bin/python).
    kept.append(Path(os.path.realpath(sys.executable)).parent)
    return list(dict.fromkeys(kept))


def system_read_roots() -> tuple[list[Path], list[Path]]:
    """(folders to read and execute, folders and files to read) that every process needs."""
    executable = [Path(p) for p in SYSTEM_EXEC_ROOTS]
    readable = [Path(p) for p in SYSTEM_READ_ROOTS] + [Path("/etc") / name for name in ETC_FILES]
    return executable, readable


def restrict(access: Access) -> int:
    """Restrict this process (and what it starts) to `access` plus the system roots; the Landlock
    ABI applied, or 0 when the kernel has no Landlock (nothing was restricted then)."""
    abi = landlock_abi()
    if abi == 0:
        return 0
    from landlockpy import AccessFS, AccessNet, Ruleset, Scope

    read = AccessFS.READ_FILE | AccessFS.READ_DIR
    execute = read | AccessFS.EXECUTE
    write = (
        read
        | AccessFS.WRITE_FILE
        | AccessFS.TRUNCATE
        | AccessFS.REMOVE_DIR
        | AccessFS.REMOVE_FILE
        | AccessFS.MAKE_DIR
        | AccessFS.MAKE_REG
        | AccessFS.MAKE_SOCK
        | AccessFS.MAKE_FIFO
        | AccessFS.MAKE_SYM
        | AccessFS.REFER
    )
    device = AccessFS.READ_FILE | AccessFS.WRITE_FILE | AccessFS.IOCTL_DEV
    # Rights that apply to a file (a rule on a file with a folder-only right is refused).
    file_rights = (
        AccessFS.EXECUTE
        | AccessFS.READ_FILE
        | AccessFS.WRITE_FILE
        | AccessFS.TRUNCATE
        | AccessFS.IOCTL_DEV
    )
    executable, readable = system_read_roots()
    rules: list[tuple[Path, AccessFS]] = [
        *((p, execute) for p in (*executable, *python_read_roots(), *access.read)),
        *((p, read) for p in readable),
        *((p, write) for p in access.write),
        *((Path(p), device if p != "/dev/shm" else write) for p in DEVICES),
    ]
    with Ruleset(
        handled_net=AccessNet.BIND_TCP | AccessNet.BIND_UDP,
        scoped=Scope.ABSTRACT_UNIX_SOCKET | Scope.SIGNAL,
    ) as ruleset:
        for path, rights in rules:
            if not path.exists():
                continue
            ruleset.allow_path(path, rights if path.is_dir() else rights & file_rights)
        for port in access.bind_ports:
            ruleset.allow_port(port, AccessNet.BIND_TCP)
        ruleset.restrict()
    return abi


# prctl(2) and capset(2) through ctypes: the standard library has neither, and the one package
# that binds them (python-prctl) is a C extension to build; these are three calls.
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def _capabilities() -> dict[str, int]:
    """This process's capability sets (CapEff, CapPrm, CapInh, CapAmb, CapBnd) from /proc."""
    sets = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name.startswith("Cap"):
            sets[name] = int(value.strip(), 16)
    return sets


def drop_capabilities() -> bool:
    """Drop every capability of this process and of what it will exec, when it has any (it runs
    as root); True when some were dropped. Root keeps its user id, but without CAP_SYS_PTRACE
    Landlock's ptrace rule holds for it too, and without CAP_DAC_OVERRIDE file modes do."""
    if not sys.platform.startswith("linux"):
        return False
    held = _capabilities()
    if os.geteuid() != 0 and not any(held.get(k, 0) for k in ("CapEff", "CapPrm", "CapAmb")):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    # The bounding set first (that needs CAP_SETPCAP, still held): root's exec gets its
    # capabilities from it, so an empty one leaves the command none.
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for capability in range(last + 1):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"cannot drop capability {capability}: {os.strerror(error)}")
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    empty = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), empty) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"cannot clear capabilities: {os.strerror(error)}")
    return True


def _parse(argv: Sequence[str]) -> tuple[Access, list[str]]:
    if "--" not in argv:
        raise SystemExit("usage: sandbox [--read P] [--write P] [--bind PORT] -- COMMAND...")
    split = list(argv).index("--")
    parser = argparse.ArgumentParser(prog=LAUNCHER_MODULE)
    parser.add_argument("--read", action="append", default=[])
    parser.add_argument("--write", action="append", default=[])
    parser.add_argument("--bind", action="append", type=int, default=[])
    options = parser.parse_args(argv[:split])
    command = list(argv[split + 1 :])
    if not command:
        raise SystemExit("sandbox: no command after --")
    return Access.of(options.read, options.write, options.bind), command


def main(argv: Sequence[str]) -> None:
    access, command = _parse(argv)
    drop_capabilities()
    if restrict(access) == 0:
        print(
            f"{UNAVAILABLE_PREFIX}: this process has the allow-listed environment only and can "
            "read what its user can.",
            file=sys.stderr,
            flush=True,
        )
    program = command[0] if os.path.isabs(command[0]) else shutil.which(command[0])
    if program is None:
        raise SystemExit(f"sandbox: {command[0]} not found on PATH")
    os.execv(program, command)


if __name__ == "__main__":
    main(sys.argv[1:])
