"""A persistent child process that loads and runs models, so that model code (which may crash,
hang, eat memory or read the environment) never runs inside the app server.

The parent talks to it over a private socketpair with multiprocessing's Connection (pickled
frames between our own two processes); the child's stdout and stderr go to a log file, so
whatever model code prints cannot corrupt the channel and can be shown as a log tail.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from deploystudio.errors import DeployStudioError, PredictionError, PredictionWorkerError
from deploystudio.payloads import ModelInput
from deploystudio.prediction import Prediction

DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_MEMORY_LIMIT_MB = 8192
LOG_TAIL_LINES = 20
# Variables the model process must not see: cloud credentials, registry credentials, tokens.
_SECRET_NAME = re.compile(
    r"(SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|API_?KEY|ACCESS_?KEY|PRIVATE|^AZURE_|^AWS_|"
    r"^GOOGLE_|^MLFLOW_TRACKING_(URI|USERNAME|PASSWORD|TOKEN)$|^DATABRICKS_)",
    re.IGNORECASE,
)


def scrubbed_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if not _SECRET_NAME.search(k)}


@dataclass(frozen=True)
class _Request:
    model_path: str
    model_input: ModelInput


class PredictionWorker:
    """Client side: starts the child on first use and again after it dies."""

    def __init__(
        self,
        log_path: Path,
        memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.log_path = log_path
        self.memory_limit_mb = memory_limit_mb
        self.timeout_seconds = timeout_seconds
        self._process: subprocess.Popen | None = None
        self._connection: Connection | None = None
        # One request at a time: Streamlit sessions share one worker.
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.alive else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        parent_socket, child_socket = socket.socketpair()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "deploystudio.prediction_worker",
                    str(child_socket.fileno()),
                    str(self.memory_limit_mb),
                ],
                pass_fds=[child_socket.fileno()],
                env=scrubbed_environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child_socket.close()
        self._connection = Connection(parent_socket.detach())

    def predict(
        self, model_path: Path, model_input: ModelInput, timeout_seconds: float | None = None
    ) -> Prediction:
        timeout = self.timeout_seconds if timeout_seconds is None else timeout_seconds
        with self._lock:
            if not self.alive:
                self._start()
            try:
                self._connection.send(_Request(str(model_path), model_input))
                if not self._connection.poll(timeout):
                    self._kill()
                    raise PredictionWorkerError(
                        f"The model did not answer within {timeout:.0f} s, so its worker was "
                        "stopped (it restarts on the next preview). Try fewer rows, or check "
                        f"the model for endless loops.{self._log_tail()}"
                    )
                status, payload = self._connection.recv()
            except (EOFError, OSError, BrokenPipeError) as exc:
                raise PredictionWorkerError(self._death_message()) from exc
        if status == "ok":
            return payload
        error_type, message = payload
        raise error_type(message)

    def _death_message(self) -> str:
        code = self._process.wait(timeout=10) if self._process else None
        self._connection = None
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            why = " (killed: often the memory limit)" if name == "SIGKILL" else ""
            how = f"was killed by {name}{why}"
        else:
            how = f"exited with code {code}"
        return (
            f"The model crashed its prediction worker, which {how}; the worker restarts on the "
            f"next preview and the app is unaffected.{self._log_tail()}"
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
        self._connection = None

    def stop(self) -> None:
        with self._lock:
            self._kill()


def _serve(connection: Connection) -> None:
    # Imported here, in the child: the parent need not load pyfunc to talk to the worker.
    from deploystudio.prediction import ModelCache, predict_in_process

    cache = ModelCache()
    while True:
        try:
            request: _Request = connection.recv()
        except EOFError:
            return
        try:
            result = (
                "ok",
                predict_in_process(cache, Path(request.model_path), request.model_input),
            )
        except MemoryError:
            result = (
                "error",
                (
                    PredictionWorkerError,
                    "The model ran out of memory in its worker (limit "
                    f"{os.environ.get('DEPLOYSTUDIO_WORKER_MEMORY_MB', '?')} MB). "
                    "Preview fewer rows.",
                ),
            )
        except DeployStudioError as exc:
            result = ("error", (type(exc), str(exc)))
        except Exception as exc:  # anything else must reach the user, not end the worker
            result = ("error", (PredictionError, f"{type(exc).__name__}: {exc}"))
        connection.send(result)


def main(argv: list[str]) -> None:
    fd, memory_limit_mb = int(argv[0]), int(argv[1])
    if memory_limit_mb > 0:
        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        os.environ["DEPLOYSTUDIO_WORKER_MEMORY_MB"] = str(memory_limit_mb)
    _serve(Connection(fd))


if __name__ == "__main__":
    main(sys.argv[1:])
