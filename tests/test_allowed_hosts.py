"""DNS rebinding: a real `streamlit run studio.py` (what `make run` starts) refuses a forged Host.

Before studio.py, `streamlit run app.py` answered `Host: evil.example` with 200 on HTTP and 101
on the WebSocket upgrade (with a matching Origin), so a page whose name resolved to 127.0.0.1
drove the app with all rights. This also fails if Streamlit stops serving an `st.App`'s
middleware before its own routes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from deploystudio.config import DEFAULT_ALLOWED_HOSTS, load_settings
from deploystudio.inference_server import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
NO_SECRETS = Path("/nonexistent/secrets.toml")


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    home = tmp_path_factory.mktemp("hosts-home")
    log_path = home / "streamlit.log"
    port = free_port()
    env = {**os.environ, "DEPLOYSTUDIO_HOME": str(home)}
    env.pop("DEPLOYSTUDIO_ALLOWED_HOSTS", None)
    command = [sys.executable, "-m", "streamlit", "run", "studio.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true"]
    with log_path.open("w") as log:
        server = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while status(port, f"127.0.0.1:{port}", "/_stcore/health") != 200:
            assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.3)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


def status(port: int, host: str, path: str = "/") -> int | None:
    """The status of GET `path` sent with `host` as the Host header (None: nothing listens)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def upgrade_status(port: int, host: str) -> bytes:
    """The status line of a WebSocket upgrade to Streamlit's stream, Origin matching Host."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            (
                f"GET /_stcore/stream HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        return sock.recv(4096).split(b"\r\n", 1)[0]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "10.0.0.1:{port}"])
def test_a_forged_host_is_refused_on_http_and_on_the_websocket(studio, host):
    forged = host.format(port=studio)
    assert status(studio, forged) == 400
    assert status(studio, forged, "/_stcore/health") == 400
    assert b" 101 " not in upgrade_status(studio, forged)


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "localhost"])
def test_localhost_names_with_the_port_work(studio, host):
    named = host.format(port=studio)
    assert status(studio, named) == 200
    assert upgrade_status(studio, named).startswith(b"HTTP/1.1 101")


def test_allowed_hosts_come_from_the_environment_or_secrets(tmp_path):
    assert load_settings({}, NO_SECRETS).allowed_hosts == DEFAULT_ALLOWED_HOSTS
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[deploystudio]\nallowed_hosts = ["studio.example.com", "*.corp"]\n')
    assert load_settings({}, secrets).allowed_hosts == ("studio.example.com", "*.corp")
    from_env = load_settings({"DEPLOYSTUDIO_ALLOWED_HOSTS": "a.example, localhost"}, secrets)
    assert from_env.allowed_hosts == ("a.example", "localhost")
