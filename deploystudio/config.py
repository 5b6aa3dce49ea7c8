"""Settings from environment variables and `.streamlit/secrets.toml`, as one frozen dataclass."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOME = ".studio"
# Host names the app answers to (the Host header, port ignored). A DNS rebinding page reaches a
# server on 127.0.0.1 under its own name: refusing other names refuses it.
DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1", "::1")
SECRETS_FILE = Path(".streamlit") / "secrets.toml"


@dataclass(frozen=True)
class Settings:
    """Where Deploy Studio keeps its state and which registry it talks to."""

    home: Path
    tracking_uri: str
    registry_uri: str
    artifact_root: Path
    # Local folders a page may open as models; the CLI may open any folder its user names.
    local_model_roots: tuple[Path, ...] = field(default_factory=tuple)
    registry_page_size: int = 50
    # Folders a page may read batch inputs from (empty: the data folder's batch-inputs/ only);
    # the CLI may read any path its user names.
    batch_input_roots: tuple[Path, ...] = field(default_factory=tuple)
    # Host names the web app accepts in the Host header (studio.py); "*" accepts any.
    allowed_hosts: tuple[str, ...] = DEFAULT_ALLOWED_HOSTS

    @property
    def allowed_batch_input_roots(self) -> tuple[Path, ...]:
        """The configured batch input roots, or the data folder's `batch-inputs/` by default."""
        return self.batch_input_roots or (self.home / "batch-inputs",)

    @property
    def is_embedded_registry(self) -> bool:
        """True when the registry is the SQLite store inside the data folder."""
        return self.tracking_uri == embedded_tracking_uri(self.home)

    @property
    def inspection_cache(self) -> Path:
        return self.home / "cache" / "inspection"


def embedded_tracking_uri(home: Path) -> str:
    return f"sqlite:///{(home / 'mlflow.db').resolve()}"


def _read_secrets(path: Path) -> Mapping[str, object]:
    if not path.is_file():
        return {}
    with path.open("rb") as handle:
        return tomllib.load(handle)


def read_secrets_section(section: str, path: Path | None = None) -> Mapping[str, object]:
    """The `[section]` table of secrets.toml (`path`, default `.streamlit/secrets.toml`); empty
    when the file or the table is missing. Raises OSError or tomllib.TOMLDecodeError for a file
    that cannot be read; callers say which file to fix."""
    secrets = _read_secrets(SECRETS_FILE if path is None else path)
    table = secrets.get(section, {})
    return table if isinstance(table, Mapping) else {}


def load_settings(
    environ: Mapping[str, str] | None = None, secrets_path: Path | None = None
) -> Settings:
    """Read settings; environment variables win over the `[deploystudio]` table of secrets.toml."""
    env = os.environ if environ is None else environ
    studio_secrets = read_secrets_section("deploystudio", secrets_path)

    def setting(env_name: str, secret_name: str) -> str | None:
        value = env.get(env_name) or studio_secrets.get(secret_name)
        if isinstance(value, list):  # a TOML array, for the settings that are lists
            value = ",".join(str(item) for item in value)
        return str(value) if value else None

    home = Path(setting("DEPLOYSTUDIO_HOME", "home") or DEFAULT_HOME).expanduser().resolve()
    tracking_uri = setting("MLFLOW_TRACKING_URI", "tracking_uri") or embedded_tracking_uri(home)
    registry_uri = setting("MLFLOW_REGISTRY_URI", "registry_uri") or tracking_uri
    roots_text = setting("DEPLOYSTUDIO_MODEL_ROOTS", "model_roots") or ""
    roots = tuple(Path(p).expanduser().resolve() for p in roots_text.split(os.pathsep) if p)
    page_size = int(setting("DEPLOYSTUDIO_PAGE_SIZE", "page_size") or 50)
    batch_text = setting("DEPLOYSTUDIO_BATCH_INPUT_ROOTS", "batch_input_roots") or ""
    batch_roots = tuple(Path(p).expanduser().resolve() for p in batch_text.split(os.pathsep) if p)
    hosts_text = setting("DEPLOYSTUDIO_ALLOWED_HOSTS", "allowed_hosts")
    hosts = tuple(h.strip() for h in (hosts_text or "").split(",") if h.strip())
    return Settings(
        home=home,
        tracking_uri=tracking_uri,
        registry_uri=registry_uri,
        artifact_root=home / "artifacts",
        local_model_roots=roots,
        registry_page_size=page_size,
        batch_input_roots=batch_roots,
        allowed_hosts=hosts or DEFAULT_ALLOWED_HOSTS,
    )


def redact_uri(uri: str) -> str:
    """Hide credentials embedded in a URI (user:password@host) before showing it."""
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return uri
    host = rest.split("@", 1)[1]
    return f"{scheme}://***@{host}"
