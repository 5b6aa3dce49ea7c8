"""One real endpoint front before one real Azure ML inference server serving the demo iris
classifier with the no-code scoring script, all on 127.0.0.1 (as tests/test_front.py builds it).

Teardown checks that no process and no port outlives the setup, and counts them in the figures.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from deploystudio import inference_server
from deploystudio.customization.scoring_script import (
    AZURE_MODEL_FOLDER,
    ScriptTemplate,
    example_request,
    generate_scoring_script,
)
from deploystudio.deployment.store import DeploymentStore
from deploystudio.prediction import local_model_path
from tests.reliability.figures import FIGURES
from tests.test_front import ENDPOINT, start_front

MAX_BODY = 256 * 1024


@dataclass
class FrontSetup:
    store: DeploymentStore
    port: int
    front_log: Path
    server_log: Path
    body: dict
    key: str
    front: subprocess.Popen
    server: inference_server.ServerHandle

    def count_crashes(self, suite: str) -> int:
        """Whether the front or its server died (each counts as a crash)."""
        dead = (self.front.poll() is not None) + (not inference_server.is_running(self.server))
        FIGURES.add(suite, "crashes", dead)
        return dead


@contextlib.contextmanager
def running_front(
    settings, registry, root: Path, suite: str, *front_args: str
) -> Iterator[FrontSetup]:
    """`front_args` go to the front after the defaults (a later option wins)."""
    iris = local_model_path("models:/iris-classifier/1", settings, registry)
    script = root / "iris" / "score.py"
    script.parent.mkdir(parents=True)
    script.write_text(generate_scoring_script(ScriptTemplate.NO_CODE, iris))
    model_dir = inference_server.stage_model(iris, root / "models", folder_name=AZURE_MODEL_FOLDER)
    handle = front = None
    pids: list[int] = []
    ports: list[int] = []
    try:
        handle = inference_server.start(script, model_dir, root / "blue.log")
        pids.append(handle.pid)
        ports.append(handle.port)
        store = DeploymentStore(root / "deployments.db")
        store.create_endpoint(ENDPOINT)
        store.create_deployment(ENDPOINT, "blue", "models:/iris-classifier/1")
        inference_server.wait_ready(handle, timeout_seconds=120)
        store.set_state(
            ENDPOINT,
            "blue",
            "starting",
            pid=handle.pid,
            port=handle.port,
            log_path=str(handle.log_path),
        )
        store.set_state(ENDPOINT, "blue", "ready")
        store.set_traffic(ENDPOINT, {"blue": 100})
        port = inference_server.free_port()
        front_log = root / "front.log"
        front = start_front(
            store.path, port, front_log, "--max-body-bytes", str(MAX_BODY), *front_args
        )
        pids.append(front.pid)
        ports.append(port)
        yield FrontSetup(
            store,
            port,
            front_log,
            handle.log_path,
            example_request(iris),
            store.get_keys(ENDPOINT).primary,
            front,
            handle,
        )
    finally:
        if front is not None:
            front.terminate()
            front.wait(10)
        if handle is not None:
            inference_server.stop(handle, grace_seconds=2)
        FIGURES.add(suite, "orphan processes", _alive(pids))
        FIGURES.add(suite, "leaked ports", _bound(ports))


def _alive(pids: list[int], wait_seconds: float = 5) -> int:
    """How many of `pids` (process groups: servers start their own) still run."""
    deadline = time.monotonic() + wait_seconds
    while True:
        alive = 0
        for pid in pids:
            try:
                os.killpg(pid, 0)
                alive += 1
            except (ProcessLookupError, PermissionError):
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _bound(ports: list[int]) -> int:
    """How many of `ports` something still listens on."""
    bound = 0
    for port in ports:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                bound += 1
    return bound
