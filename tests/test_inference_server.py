"""The Azure ML inference server runner: real gunicorn servers on 127.0.0.1, small scripts.

The scripts here load no model, so each server starts in a couple of seconds; the scoring
templates with real MLflow models are tested in test_scoring_script.py.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from deploystudio import inference_server
from deploystudio.errors import ScoringServerError

# The reliability suites' /proc reader, not the one processes.py stops servers with: a check
# written apart from the code it checks.
from tests.reliability.fault_support import group_members

ECHO_SCRIPT = """
import json
import os

def init():
    global model_files
    model_files = sorted(os.listdir(os.environ["AZUREML_MODEL_DIR"]))

def run(raw_data):
    return {"echo": json.loads(raw_data), "model_files": model_files,
            "secret": os.environ.get("AZURE_CLIENT_SECRET")}
"""


def write_script(folder: Path, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "score.py"
    script.write_text(textwrap.dedent(source))
    return script


def fake_model(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "weights.bin").write_bytes(b"\x00" * 16)
    return folder


def listening_addresses(port: int) -> set[str]:
    """Local addresses listening on `port` (IPv4 and IPv6), from /proc/net."""
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("echo")
    model_dir = inference_server.stage_model(fake_model(root / "source" / "model"), root / "models")
    os.environ["AZURE_CLIENT_SECRET"] = "must-not-reach-the-server"
    try:
        handle = inference_server.start(
            write_script(root / "app", ECHO_SCRIPT), model_dir, root / "server.log"
        )
    finally:
        del os.environ["AZURE_CLIENT_SECRET"]
    try:
        ready = inference_server.wait_ready(handle, timeout_seconds=60)
        yield handle, ready
    finally:
        inference_server.stop(handle)


def test_server_scores_on_loopback_only(echo_server):
    handle, ready_seconds = echo_server
    assert 0 < ready_seconds < 60
    assert listening_addresses(handle.port) == {"0100007F"}  # 127.0.0.1, nothing else
    status, answer = inference_server.score(handle, {"input_data": [1, 2]})
    assert status == 200
    assert answer["echo"] == {"input_data": [1, 2]}
    # AZUREML_MODEL_DIR is the version folder holding the model's own folder, as on Azure.
    assert answer["model_files"] == ["model"]


def test_server_gets_no_secrets(echo_server):
    handle, _ = echo_server
    status, answer = inference_server.score(handle, "{}")
    assert status == 200
    assert answer["secret"] is None


def test_client_errors_come_back_as_status_and_body(echo_server):
    handle, _ = echo_server
    status, answer = inference_server.score(handle, b"\xff\xfe")
    assert status == 400
    assert "UTF-8" in answer["message"]


def test_init_that_raises_stops_the_server_with_its_log(tmp_path):
    model_dir = inference_server.stage_model(fake_model(tmp_path / "model"), tmp_path / "models")
    script = write_script(
        tmp_path / "app",
        """
        def init():
            raise RuntimeError("cannot open the model")

        def run(raw_data):
            return raw_data
        """,
    )
    handle = inference_server.start(script, model_dir, tmp_path / "server.log")
    try:
        with pytest.raises(ScoringServerError) as error:
            inference_server.wait_ready(handle, timeout_seconds=60)
        assert "stopped before it was ready" in str(error.value)
        assert "RuntimeError: cannot open the model" in str(error.value)
        assert not inference_server.is_running(handle)
    finally:
        inference_server.stop(handle)
    assert group_members(handle.pid) == []


def test_detached_server_is_not_our_child_and_stops_by_pid(tmp_path):
    model_dir = inference_server.stage_model(fake_model(tmp_path / "model"), tmp_path / "models")
    script = write_script(
        tmp_path / "app", "def init():\n    pass\n\ndef run(raw_data):\n    return 1\n"
    )
    handle = inference_server.start(script, model_dir, tmp_path / "server.log", detached=True)
    try:
        assert handle.process is None
        inference_server.wait_ready(handle, timeout_seconds=60)
        parent = int(Path(f"/proc/{handle.pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert parent != os.getpid()
        assert os.getsid(handle.pid) == handle.pid  # its own session: a terminal hangup spares it
        # A handle rebuilt from what a deployment record stores (pid, port, log) is enough.
        stored = inference_server.ServerHandle(handle.pid, handle.port, handle.log_path)
        assert inference_server.score(stored, "{}") == (200, 1)
        inference_server.stop(stored)
        assert not inference_server.is_running(stored)
        assert group_members(handle.pid) == []
    finally:
        inference_server.stop(handle)


def test_wait_ready_times_out_on_an_endless_init(tmp_path):
    model_dir = inference_server.stage_model(fake_model(tmp_path / "model"), tmp_path / "models")
    script = write_script(
        tmp_path / "app",
        "import time\n\ndef init():\n    while True:\n        time.sleep(0.05)\n\n"
        "def run(raw_data):\n    return 1\n",
    )
    handle = inference_server.start(script, model_dir, tmp_path / "server.log")
    try:
        started = time.monotonic()
        with pytest.raises(ScoringServerError, match="not ready within 3 s"):
            inference_server.wait_ready(handle, timeout_seconds=3)
        assert time.monotonic() - started < 3 + 1.5
        assert inference_server.is_running(handle)
    finally:
        stop_started = time.monotonic()
        inference_server.stop(handle, grace_seconds=1)
    # The worker ignores SIGTERM while init() runs: stop() kills it after the grace period.
    assert time.monotonic() - stop_started < 5
    assert group_members(handle.pid) == []


def test_stage_model_lays_out_azure_folders_with_hard_links(tmp_path):
    source = fake_model(tmp_path / "cache" / "artifacts")
    model_dir = inference_server.stage_model(source, tmp_path / "models", "iris", 3)
    assert model_dir == tmp_path / "models" / "iris" / "3"
    staged = model_dir / "artifacts" / "weights.bin"
    assert staged.read_bytes() == b"\x00" * 16
    assert not staged.is_symlink()
    assert staged.stat().st_ino == (source / "weights.bin").stat().st_ino
    # Staging again replaces the copy rather than failing on it.
    assert inference_server.stage_model(source, tmp_path / "models", "iris", 3) == model_dir


def test_stage_model_refuses_a_folder_without_mlmodel(tmp_path):
    with pytest.raises(ScoringServerError, match="no MLmodel file"):
        inference_server.stage_model(tmp_path, tmp_path / "models")


def test_start_refuses_a_missing_script(tmp_path):
    with pytest.raises(ScoringServerError, match="does not exist"):
        inference_server.start(tmp_path / "nope.py", tmp_path, tmp_path / "server.log")


def test_log_tail_keeps_the_last_lines(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    tail = inference_server.log_tail(log, lines=3)
    assert tail.splitlines()[1:] == ["line 97", "line 98", "line 99"]
    assert inference_server.log_tail(tmp_path / "missing.log") == "(no server log)"


def test_free_port_is_bindable_on_loopback():
    port = inference_server.free_port()
    assert 1024 < port < 65536


def test_a_stored_pid_now_used_by_another_program_is_left_alone():
    # What a deployment record holds after a reboot: a pid the system gave to someone else.
    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        stale = inference_server.ServerHandle(other.pid, inference_server.free_port(), Path("x"))
        assert not inference_server.is_running(stale)
        inference_server.stop(stale)
        time.sleep(0.2)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_the_control_socket_option_is_passed_only_to_a_gunicorn_that_knows_it(tmp_path):
    """gunicorn 25.1 added --no-control-socket; the gunicorn 23 that MLflow 2.17 allows in a
    model environment refuses it. The version is read from the environment's installed
    metadata, without starting a process."""
    import uv

    venv = tmp_path / "venv"
    subprocess.run(
        [uv.find_uv_bin(), "venv", str(venv), "--no-python-downloads", "--no-project", "-q"],
        check=True,
        env={**os.environ, "VIRTUAL_ENV": ""},
    )
    python = venv / "bin" / "python"
    assert inference_server.gunicorn_version(python) is None  # no gunicorn there
    no_gunicorn = inference_server.server_command(5001, 1, python=python, gunicorn=None)
    assert "--no-control-socket" not in no_gunicorn and no_gunicorn[0] == str(python)
    site = next((venv / "lib").glob("python3*/site-packages"))
    info = site / "gunicorn-23.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gunicorn\nVersion: 23.0.0\n")
    old = inference_server.gunicorn_version(python)
    assert str(old) == "23.0.0"
    command = inference_server.server_command(5001, 1, python=python, gunicorn=old)
    assert "--no-control-socket" not in command and inference_server.WSGI_APP in command
    # Ours (26 here) knows it: our servers keep their control socket off.
    assert inference_server.gunicorn_version() >= inference_server.CONTROL_SOCKET_SINCE
    assert "--no-control-socket" in inference_server.server_command(5001, 1)
