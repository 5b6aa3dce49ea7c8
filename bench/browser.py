"""What bench/ui.py and bench/screenshots.py share: the app and MLflow's server as real
processes on loopback ports, and Debian's Chromium driven by Playwright (never a downloaded
browser)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STARTUP_TIMEOUT_SECONDS = 120
VIEWPORT = {"width": 1400, "height": 1000}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def app_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "DEPLOYSTUDIO_HOME": str(home)}
    # The app's embedded registry is the one in `home`, as with `make run`.
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_REGISTRY_URI", None)
    return env


def start_app(home: Path, log: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """`streamlit run studio.py` as `make run` starts it, on a free loopback port; returns
    at once (see `wait_for_app`)."""
    port = port or free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "studio.py",
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=REPO_ROOT,
            env=app_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, f"http://127.0.0.1:{port}"


def wait_for_app(process: subprocess.Popen, url: str, log: Path) -> None:
    wait_for_http(f"{url}/_stcore/health", process, log, STARTUP_TIMEOUT_SECONDS)


def start_mlflow_ui(tracking_uri: str, artifacts: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """MLflow's own tracking server and UI on the same store, one worker (like our one app)."""
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                str(mlflow),
                "server",
                "--backend-store-uri",
                tracking_uri,
                "--default-artifact-root",
                artifacts.as_uri(),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/health", process, log, STARTUP_TIMEOUT_SECONDS)
    return process, url


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def chromium() -> Iterator[object]:
    """A Playwright Chromium browser: Debian's, at /usr/bin/chromium."""
    if not CHROMIUM.exists():
        raise SystemExit("Chromium is not installed: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
