"""What the front needs to restart a server: its launch moved to a new port, its restarts."""

from __future__ import annotations

import json

from deploystudio.deployment.local.healing import (
    RESTARTS_FILE,
    can_restart,
    restart_count,
    restarts,
    with_port,
)
from deploystudio.deployment.local.processes import RELAUNCH_FILE
from deploystudio.inference_server import server_command, server_environment


def test_an_azure_servers_launch_moves_to_the_new_port_everywhere(tmp_path):
    spec = {
        "command": server_command(41001, 1),
        "env": server_environment(tmp_path / "score.py", tmp_path, 41001, 1, {"OTHER": "41001"}),
        "cwd": str(tmp_path),
        "log": str(tmp_path / "server.log"),
    }
    moved = with_port(spec, 41001, 52002)
    assert "127.0.0.1:52002" in moved["command"] and "127.0.0.1:41001" not in moved["command"]
    assert moved["env"]["SERVER_PORT"] == moved["env"]["HEALTH_PORT"] == "52002"
    assert moved["env"]["OTHER"] == "41001"  # a user's variable is not a port to move
    assert spec["command"] == server_command(41001, 1)  # the original is left as it was


def test_an_mlflow_servers_launch_moves_only_its_port_option():
    command = ["python", "-m", "uvicorn", "--host", "127.0.0.1", "--port", "41001"]
    moved = with_port({"command": [*command, "--workers", "41001"], "env": {}}, 41001, 52002)
    assert moved["command"][-4:] == ["--port", "52002", "--workers", "41001"]


def test_restarts_are_read_from_the_run_folder(tmp_path):
    log = tmp_path / "server.log"
    assert restart_count(log) == 0 and restart_count(None) == 0 and not can_restart(log)
    (tmp_path / RELAUNCH_FILE).write_text("{}")
    assert can_restart(log)
    (tmp_path / RESTARTS_FILE).write_text(json.dumps([{"at": 1.0, "problem": "exited"}, 3]))
    assert restarts(log) == [{"at": 1.0, "problem": "exited"}]
    (tmp_path / RESTARTS_FILE).write_text("not json")
    assert restart_count(log) == 0
