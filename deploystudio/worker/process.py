"""A persistent child process that loads and runs models (and other code the app must not run
itself), so that model code (which may crash, hang, eat memory or read the environment) never
runs inside the app server.

The parent talks to it over a private socketpair, with large buffers passed through shared
memory (`deploystudio.worker.channel`). Requests are pickled: the worker runs untrusted code
anyway, so unpickling what the app sends costs nothing. Replies are not: model code can take
the worker over and write anything back, so the app decodes them without running code they
name (`deploystudio.worker.replies`), and a reply that is not well formed stops the worker (it
restarts on next use). The child's stdout and stderr go to a log file, so whatever model code
prints cannot corrupt the channel and can be shown as a log tail.

`PredictionWorker.call` runs any module-level function there; `predict` is one such call, whose
model cache lives in the child for the child's whole life.

The child runs behind `deploystudio.worker.sandbox` with an allow-listed environment: it reads
the Python installation and what the worker's `access` and each call's access name (for
`predict`, the model folder), and writes only its private folder (its HOME and TMPDIR, removed
when it stops). A call that needs more than the running child may reach restarts it with exactly
what that call needs: previewing another model starts a fresh worker that cannot read the last
one's folder, while previews of one model keep it loaded.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from deploystudio.errors import PredictionError, PredictionWorkerError
from deploystudio.worker import replies as worker_replies
from deploystudio.worker.channel import Channel, MalformedMessageError, new_memory_file
from deploystudio.worker.isolation import scrubbed_environment
from deploystudio.worker.sandbox import Access, sandboxed_command

if TYPE_CHECKING:  # the worker side may run in a model's environment, without the app's deps
    from deploystudio.payloads import ModelInput
    from deploystudio.prediction import ModelCache, Prediction, RawPrediction

DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_MEMORY_LIMIT_MB = 8192
LOG_TAIL_LINES = 20
# Once a reply has begun, the rest of it must follow within this many seconds (or the call's
# own timeout, if longer): a worker that stops halfway must not hold the app.
REPLY_READ_SECONDS = 30.0
# How often a worker checks that the process it serves still runs.
PARENT_CHECK_SECONDS = 0.5
# The worker's entry point. Once the process it serves is gone (even by SIGKILL, which leaves
# that process no chance to stop it) nobody reads its answers: it ends instead of running model
# code for nobody until its call ends, however long that is. A thread watches, since the main
# one may be busy in model code; it starts before the heavy imports (pandas, MLflow), which
# take seconds on a busy machine. The process served is named by its pid: read here, after the
# sandbox launcher ran, getppid() may already name init if it died meanwhile.
_BOOT = f"""
import faulthandler, os, sys, threading, time
faulthandler.enable()  # a native crash writes where it happened to the log, which we show
parent = int(sys.argv[-1])
def watch():
    while os.getppid() == parent:
        time.sleep({PARENT_CHECK_SECONDS})
    os._exit(3)
threading.Thread(target=watch, daemon=True).start()
from deploystudio.worker import process as prediction_worker
prediction_worker.main(sys.argv[1:-1])
"""
# In a model's own environment, which does not have deploystudio installed, the package is
# loaded from its folder by path: the sandbox lets the worker read that folder but not the
# repository around it, so putting its parent on sys.path (which Python lists) would not find
# it. Its submodules are then found through the package's own __path__.
_FOREIGN_BOOT = """
import importlib.util, sys
folder = sys.argv.pop(1)
spec = importlib.util.spec_from_file_location(
    "deploystudio", folder + "/__init__.py", submodule_search_locations=[folder])
package = importlib.util.module_from_spec(spec)
sys.modules["deploystudio"] = package
spec.loader.exec_module(package)
""" + _BOOT
PACKAGE_FOLDER = Path(__file__).resolve().parents[1]

T = TypeVar("T")
# Signals of a crash in compiled code (as opposed to one sent by us or the kernel's OOM killer).
_NATIVE_CRASHES = frozenset(
    {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT}
)


@dataclass(frozen=True)
class CallTimings:
    """Where the seconds of the last call went, for benchmarks: pickling and sending the request
    here, reading and unpickling it in the worker, running the function there, the rest of the
    round trip (the worker encoding and sending its answer, both processes waking up), reading
    and decoding the answer here."""

    encode: float
    worker_decode: float
    worker_run: float
    transport: float
    decode: float

    @property
    def total(self) -> float:
        return self.encode + self.worker_decode + self.worker_run + self.transport + self.decode


@dataclass(frozen=True)
class _Wording:
    """How errors name what ran: a preview's model, or any other code."""

    subject: str
    restart: str
    slow: str
    memory: str


_PREVIEW = _Wording(
    subject="The model",
    restart="it restarts on the next preview",
    slow="Try fewer rows, or check the model for endless loops.",
    memory="Preview fewer rows.",
)
_CODE = _Wording(
    subject="The code",
    restart="it restarts on next use",
    slow="Check the code for endless loops, or give it less work.",
    memory="Give it less data.",
)


class PredictionWorker:
    """Client side: starts the child on first use and again after it dies."""

    def __init__(
        self,
        log_path: Path,
        memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        access: Access | None = None,
        python: Path | None = None,
    ) -> None:
        """`python`: the interpreter of a model's own environment (its folder must be in
        `access`'s read roots); None for the app's own."""
        self.log_path = log_path
        self.python = python
        self.memory_limit_mb = memory_limit_mb
        self.timeout_seconds = timeout_seconds
        # What every call may reach (a batch job's model, inputs and parts folder); calls add
        # their own (`predict`: the model folder).
        self.access = access or Access()
        self.last_timings: CallTimings | None = None
        self._process: subprocess.Popen | None = None
        self._channel: Channel | None = None
        self._running_access: Access | None = None
        self._private_dir: Path | None = None
        # One request at a time: Streamlit sessions share one worker.
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.alive else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _start(self, access: Access) -> None:
        self._close_channel()  # left by a worker that died between calls
        self._remove_private_dir()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Outside the data folder: the child's HOME, TMPDIR and working folder, its own only.
        private = Path(tempfile.mkdtemp(prefix="deploystudio-worker-")).resolve()
        parent_socket, child_socket = socket.socketpair()
        # One memory file per direction; the child gets both by number, like the socket.
        requests, replies = new_memory_file("ds-requests"), new_memory_file("ds-replies")
        child_fds = [fd for fd in (child_socket.fileno(), requests, replies) if fd is not None]
        foreign = self.python is not None
        command = [
            str(self.python) if foreign else sys.executable,
            # -P: no current directory on sys.path, so what the worker imports does not
            # depend on where the app was started (functions sent to `call` must be
            # importable from installed packages, such as deploystudio).
            "-P",
            "-c",
            *((_FOREIGN_BOOT, str(PACKAGE_FOLDER)) if foreign else (_BOOT,)),
            str(child_socket.fileno()),
            str(self.memory_limit_mb),
            str(-1 if requests is None else requests),
            str(-1 if replies is None else replies),
            str(os.getpid()),
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                sandboxed_command(command, access | Access.of(write=[private])),
                pass_fds=child_fds,
                env=scrubbed_environment(home=private, temp=private),
                cwd=private,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child_socket.close()
        self._channel = Channel(parent_socket, requests, replies)
        self._running_access = access
        self._private_dir = private

    def predict(
        self, model_path: Path, model_input: ModelInput, timeout_seconds: float | None = None
    ) -> Prediction:
        if self.python is not None:
            return self._predict_foreign(model_path, model_input, timeout_seconds)
        raw: RawPrediction = self._call(
            _predict_in_worker,
            (str(model_path), model_input),
            timeout_seconds,
            _PREVIEW,
            Access.of(read=[model_path]),
        )
        # The table is built here: an array crosses the socket for a fraction of a DataFrame.
        return raw.prediction()

    def _predict_foreign(
        self, model_path: Path, model_input: ModelInput, timeout_seconds: float | None
    ) -> Prediction:
        # In a model's own environment only plain data crosses (see worker.foreign); what the
        # app's worker does after predicting (warnings, the table) is done here instead.
        from deploystudio.prediction import RawPrediction, finished_output
        from deploystudio.worker.foreign import portable_input, predict_portable

        done = self._call(
            predict_portable,
            (str(model_path), portable_input(model_input.data, model_input.params)),
            timeout_seconds,
            _PREVIEW,
            Access.of(read=[model_path]),
        )
        output, warnings = finished_output(done["output"], model_input.data)
        return RawPrediction(
            output=output,
            load_seconds=done["load_seconds"],
            predict_seconds=done["predict_seconds"],
            from_cache=done["from_cache"],
            warnings=list(dict.fromkeys([*model_input.warnings, *warnings])),
        ).prediction()

    def call(
        self,
        function: Callable[..., T],
        *args: Any,
        timeout_seconds: float | None = None,
        access: Access | None = None,
    ) -> T:
        """`function(*args)` run in the worker, and its result.

        The worker reaches what the worker's `access` and this call's `access` name, nothing
        else of the data folder or the user's files (`deploystudio.worker.sandbox`).

        `function` must be importable by name in the worker (a module-level function of an
        installed package: it is pickled by reference), and `args` picklable. The result must be
        of a type replies carry (`deploystudio.worker.replies`: plain data, numpy arrays, pandas
        frames, paths and the dataclasses listed there); any other raises `PredictionError`.
        A `DeployStudioError` raised there is raised here as the same type with the same message
        (by its name in deploystudio.errors); any other exception becomes a `PredictionError`
        naming its type. A crash, a timeout, the memory limit or a reply that is not well formed
        raise `PredictionWorkerError`, and the worker restarts on next use.
        """
        return self._call(function, args, timeout_seconds, _CODE, access or Access())

    def _call(
        self,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        timeout_seconds: float | None,
        wording: _Wording,
        access: Access,
    ) -> Any:
        timeout = self.timeout_seconds if timeout_seconds is None else timeout_seconds
        needed = self.access | access
        with self._lock:
            if self.alive and self._channel.poll(0):
                # The worker spoke unasked: model code wrote to the socket. Whatever it sent is
                # not an answer to this call, and the worker cannot be trusted any more.
                self._kill()
            if self.alive and not self._running_access.covers(needed):
                self._kill()  # it cannot reach what this call needs (another model)
            if not self.alive:
                self._start(needed)
            started = time.perf_counter()
            try:
                self._channel.send((function, args))
            except (pickle.PicklingError, AttributeError, TypeError) as exc:
                raise TypeError(
                    f"Cannot send {function!r} to the worker: it must be a module-level "
                    f"function and its arguments picklable ({exc})."
                ) from exc
            except OSError as exc:
                raise PredictionWorkerError(self._death_message(wording)) from exc
            sent = time.perf_counter()
            # A worker that died makes the socket readable: recv then sees the end of it.
            if not self._channel.poll(timeout):
                self._kill()
                raise PredictionWorkerError(
                    f"{wording.subject} did not answer within {timeout:.0f} s, so its worker "
                    f"was stopped ({wording.restart}). {wording.slow}{self._log_tail()}"
                )
            answered = time.perf_counter()
            try:
                body, buffers = self._channel.recv_frame(max(REPLY_READ_SECONDS, timeout))
                reply = worker_replies.decode_reply(body, buffers)
            except (EOFError, OSError) as exc:
                raise PredictionWorkerError(self._death_message(wording)) from exc
            except (MalformedMessageError, worker_replies.MalformedReplyError) as exc:
                self._kill()
                raise PredictionWorkerError(
                    f"The worker sent an unreadable reply ({exc}), so it was stopped "
                    f"({wording.restart}). {wording.subject} may have written to the worker's "
                    f"channel itself: run only models and code you trust.{self._log_tail()}"
                ) from exc
        worker_decode, worker_run = reply.timings
        self.last_timings = CallTimings(
            encode=sent - started,
            worker_decode=worker_decode,
            worker_run=worker_run,
            transport=max(0.0, answered - sent - worker_decode - worker_run),
            decode=time.perf_counter() - answered,
        )
        if reply.kind == worker_replies.OK:
            return reply.value
        if reply.kind == worker_replies.OUT_OF_MEMORY:
            raise PredictionWorkerError(
                f"{wording.subject} ran out of memory in its worker (limit "
                f"{self.memory_limit_mb} MB). {wording.memory}"
            )
        raise reply.error_type(reply.message)

    def _death_message(self, wording: _Wording) -> str:
        code = self._process.wait(timeout=10) if self._process else None
        self._close_channel()
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            why = " (killed: often the memory limit)" if name == "SIGKILL" else ""
            if -code in _NATIVE_CRASHES:
                why = (
                    " (a native crash, in compiled code: often a library built for other "
                    "versions of numpy or of the packages beside it)"
                )
            how = f"was killed by {name}{why}"
        else:
            how = f"exited with code {code}"
        return (
            f"{wording.subject} crashed its worker, which {how}; {wording.restart} and the app "
            f"is unaffected.{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except OSError:
            return ""
        return "\n\nWorker log (last lines):\n" + "\n".join(lines) if lines else ""

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)
        self._close_channel()
        self._remove_private_dir()

    def _remove_private_dir(self) -> None:
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None

    def _close_channel(self) -> None:
        if self._channel is not None:
            with contextlib.suppress(OSError):
                self._channel.close()
            self._channel = None

    def stop(self) -> None:
        with self._lock:
            self._kill()


# ----------------------------------------------------------------------------- worker side

# Loaded models, for the worker's whole life (only ever made in the worker process, and only
# in the app's environment: a model's own has predictions through worker.foreign).
_CACHE: list[ModelCache] = []


def _predict_in_worker(model_path: str, model_input: ModelInput) -> RawPrediction:
    from deploystudio.prediction import ModelCache, predict_raw

    if not _CACHE:
        _CACHE.append(ModelCache())
    return predict_raw(_CACHE[0], Path(model_path), model_input)


def _serve(channel: Channel) -> None:
    while True:
        try:
            channel.poll(None)  # wait for a request; its reading counts as decoding
            started = time.perf_counter()
            request = channel.recv()
        except EOFError:
            return
        except Exception as exc:  # e.g. a function this process cannot import
            started = time.perf_counter()
            request = (_unreadable, (f"{type(exc).__name__}: {exc}",))
        decoded = time.perf_counter()
        failure: BaseException | None = None
        value = None
        try:
            function, args = request
            value = function(*args)
        except Exception as exc:  # anything must reach the user, not end the worker
            failure = exc
        timings = (decoded - started, time.perf_counter() - decoded)
        channel.send_frame(*_reply(failure, value, timings))


def _reply(
    failure: BaseException | None, value: Any, timings: tuple[float, float]
) -> tuple[bytes, list[memoryview]]:
    if isinstance(failure, MemoryError):
        return worker_replies.encode_out_of_memory(timings)
    if failure is not None:
        return worker_replies.encode_error(failure, timings)
    try:
        return worker_replies.encode_ok(value, timings)
    except MemoryError:
        return worker_replies.encode_out_of_memory(timings)
    except Exception as exc:  # a result of a type replies do not carry
        message = worker_replies.unsupported_message(exc, value)
        return worker_replies.encode_error(PredictionError(message), timings)


def _unreadable(reason: str) -> None:
    raise PredictionError(f"The worker cannot read the request: {reason}")


def main(argv: list[str]) -> None:
    fd, memory_limit_mb = int(argv[0]), int(argv[1])
    requests, replies = (int(a) if int(a) >= 0 else None for a in argv[2:4])
    if memory_limit_mb > 0:
        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sock = socket.socket(fileno=fd)
    _serve(Channel(sock, outgoing_fd=replies, incoming_fd=requests))


if __name__ == "__main__":
    # Run the module's imported copy, not this `__main__` one: functions sent by reference (such
    # as `_predict_in_worker`) live there, and so must the model cache they share.
    from deploystudio.worker import process as prediction_worker

    prediction_worker.main(sys.argv[1:])
