"""Running uv: its binary, the environment it runs with, the user's package index settings.

uv reads its own settings (UV_* variables, uv.toml) but not pip's. Users of this app configure
their index for pip (PIP_INDEX_URL, pip.conf), so the pip settings that choose where packages
come from are translated for uv: index-url, extra-index-url, find-links and cert. Other pip
settings (timeouts, constraints) are not.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploystudio.config import redact_uri
from deploystudio.errors import PackageIndexUnreachableError
from deploystudio.worker.isolation import scrubbed_environment

_NETWORK_NAMES = frozenset(
    {
        "HOME",
        "XDG_CACHE_HOME",
        "XDG_CONFIG_HOME",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "NETRC",
    }
)
_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s'\"]+")
_UNREACHABLE = (
    "Failed to fetch",
    "error sending request",
    "tcp connect error",
    "dns error",
    "Connection refused",
    "timed out",
    "Network is unreachable",
)


def redact_urls(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by *** (uv's messages and logs
    quote index URLs, which may carry a user and password)."""
    return _URL.sub(lambda match: redact_uri(match.group(0)), text)


def uv_binary() -> Path:
    """The uv binary that the `uv` package installed beside this Python."""
    import uv

    return Path(uv.find_uv_bin())


@dataclass(frozen=True)
class IndexSettings:
    """Where packages come from, as uv will be told, and which setting said so."""

    index_url: str | None
    extra_index_urls: tuple[str, ...]
    find_links: tuple[str, ...]
    cert: str | None
    origin: str  # "uv settings", "pip settings", "defaults"

    def describe(self) -> str:
        where = redact_urls(self.index_url or "PyPI (https://pypi.org/simple)")
        count = len(self.extra_index_urls)
        extra = f" and {count} extra index(es)" if count else ""
        links = f", find-links {', '.join(self.find_links)}" if self.find_links else ""
        return f"{where}{extra}{links} (from {self.origin})"


@functools.cache
def pip_config() -> dict[str, str]:
    """pip's merged settings as `pip config list` prints them (files and PIP_* variables); read
    once per process, through pip itself rather than by re-implementing its file lookup."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    config = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            config[key.strip()] = value.strip().strip("'\"")
    return config


def _pip_setting(config: dict[str, str], name: str) -> str | None:
    # pip's precedence: an environment variable, then the [install] section, then [global].
    for key in (f":env:.{name}", f"install.{name}", f"global.{name}"):
        if config.get(key):
            return config[key]
    return None


def index_settings(environ: dict[str, str] | None = None) -> IndexSettings:
    env = os.environ if environ is None else environ
    uv_keys = ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_EXTRA_INDEX_URL")
    if any(env.get(k) for k in uv_keys):
        return IndexSettings(
            index_url=env.get("UV_DEFAULT_INDEX") or env.get("UV_INDEX_URL"),
            extra_index_urls=tuple(
                (env.get("UV_INDEX", "") + " " + env.get("UV_EXTRA_INDEX_URL", "")).split()
            ),
            find_links=tuple(env.get("UV_FIND_LINKS", "").split()),
            cert=env.get("SSL_CERT_FILE"),
            origin="uv settings",
        )
    if environ is None:
        config = pip_config()
    else:  # the PIP_* variables of `environ` only, named as `pip config list` names them
        config = {
            f":env:.{k[4:].lower().replace('_', '-')}": v for k, v in env.items() if k[:4] == "PIP_"
        }
    index = _pip_setting(config, "index-url")
    extra = tuple((_pip_setting(config, "extra-index-url") or "").split())
    links = tuple((_pip_setting(config, "find-links") or "").split())
    cert = _pip_setting(config, "cert")
    if index or extra or links or cert:
        return IndexSettings(index, extra, links, cert, "pip settings")
    return IndexSettings(None, (), (), None, "defaults")


def uv_environment(settings: IndexSettings | None = None) -> dict[str, str]:
    """The environment uv runs with: the app's, less its secrets (package builds run code), with
    Python downloads off and the index settings translated from pip's."""
    settings = settings or index_settings()
    # Model code's allow list, plus what reaching an index takes: the user's home (uv's cache and
    # uv.toml), proxies and certificates, and uv's and pip's own settings and index credentials
    # (UV_INDEX_<NAME>_PASSWORD). Nothing else of the app's: package builds run code too.
    env = scrubbed_environment()
    env.update(
        {
            k: v
            for k, v in os.environ.items()
            if k.startswith(("UV_", "PIP_")) or k.upper() in _NETWORK_NAMES
        }
    )
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.pop("VIRTUAL_ENV", None)
    if settings.origin == "pip settings":
        if settings.index_url:
            env["UV_DEFAULT_INDEX"] = settings.index_url
        if settings.extra_index_urls:
            env["UV_INDEX"] = " ".join(settings.extra_index_urls)
            # pip picks the best version across all indexes; uv by default stops at the first
            # index that has the package, which would hide PyPI's releases behind a mirror that
            # holds one. Keep pip's behaviour, which the user configured for pip.
            env.setdefault("UV_INDEX_STRATEGY", "unsafe-best-match")
        if settings.find_links:
            env["UV_FIND_LINKS"] = " ".join(settings.find_links)
        if settings.cert:
            env.setdefault("SSL_CERT_FILE", settings.cert)
    return env


@dataclass(frozen=True)
class UvResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def cause(self) -> str:
        """uv's explanation, credentials removed: its `cause:` lines, else its last lines."""
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        causes = [ln.removeprefix("cause:").strip() for ln in lines if ln.startswith("cause:")]
        return redact_urls(" ".join(causes or lines[-3:]))


def run_uv(
    args: list[str],
    env: dict[str, str],
    stdin: str | None = None,
    on_line: Callable[[str], None] | None = None,
    timeout: float = 900,
) -> UvResult:
    """Run `uv ARGS`; with `on_line`, each stderr line (uv's progress) is passed on as it comes."""
    command = [str(uv_binary()), *args]
    if on_line is None:
        done = subprocess.run(
            command, input=stdin, capture_output=True, text=True, env=env, timeout=timeout
        )
        result = UvResult(done.returncode, done.stdout, done.stderr)
    else:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            on_line(redact_urls(line.rstrip("\n")))
        process.wait(timeout=timeout)
        result = UvResult(process.returncode, "", "".join(lines))
    if result.returncode != 0 and any(marker in result.stderr for marker in _UNREACHABLE):
        raise PackageIndexUnreachableError(
            f"The package index could not be reached ({index_settings().describe()}): "
            f"{result.cause}. Check the network or your index settings (PIP_INDEX_URL, "
            "UV_DEFAULT_INDEX, pip.conf), or run the model in the app's environment with "
            "--env app."
        )
    return result
