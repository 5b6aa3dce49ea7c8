"""Read a model's own artifacts, local or in the registry, without ever leaving them."""

from __future__ import annotations

import hashlib
import os
import posixpath
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, ErrorCode
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.utils.file_utils import local_file_uri_to_path

from deploystudio.errors import InvalidModelError, UnsafePathError

# Listing stops here: a model with more files is listed in part and says so.
MAX_LISTED_ARTIFACTS = 2000


def local_artifact_folder(location: str) -> Path | None:
    """The folder an artifact location names on this machine (a file:// URI or a plain path);
    None for remote stores (s3://, mlflow-artifacts:/, ...), which have no links to follow."""
    scheme = urlparse(location).scheme
    if scheme == "file":
        return Path(local_file_uri_to_path(location))
    return Path(location) if scheme == "" else None


def links_leaving(root: Path) -> list[str]:
    """Relative paths of the links under `root` that lead outside it.

    MLflow's download of a whole local artifact folder copies what such a link points at
    (it checks single files, not folders), so a registered version whose source folder holds a
    link to /home/someone/.ssh/id_rsa would have that file copied into our cache.
    """
    real_root = root.resolve()
    leaving = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_symlink() and not path.resolve().is_relative_to(real_root):
                leaving.append(path.relative_to(root).as_posix())
    return sorted(leaving)


@dataclass(frozen=True)
class ArtifactEntry:
    path: str
    is_dir: bool
    size: int | None


def safe_relative_path(path: str) -> str:
    """`path` as a normalised relative POSIX path inside the model, or UnsafePathError.

    Paths come from users and from MLmodel files written by others, so anything that could
    name a place outside the model is refused rather than cleaned up: absolute paths, `..`,
    URL schemes, percent-encoding, `#`/`?` and backslashes.
    """
    text = str(path)
    decoded = unquote(text)
    problems = (
        not text.strip(),
        decoded != text,
        any(c in text for c in "\\#?\x00"),
        ":" in text,
        text.startswith(("/", "~")),
    )
    if any(problems):
        raise UnsafePathError(f"'{path}' is not a plain relative path inside the model.")
    # Over the OS limits (255 bytes a name, 4096 a path) stat() raises OSError, not "no file".
    if len(text.encode("utf-8", "surrogatepass")) > 4096 or any(
        len(part.encode("utf-8", "surrogatepass")) > 255 for part in text.split("/")
    ):
        raise UnsafePathError(
            f"'{text[:60]}...' is longer than a file path can be ({len(text)} characters): "
            "no file of the model has this name."
        )
    normalised = posixpath.normpath(text)
    if normalised == ".." or normalised.startswith("../") or normalised.startswith("/"):
        raise UnsafePathError(f"'{path}' points outside the model's artifacts.")
    return normalised


class ModelFiles(ABC):
    """A model's artifact tree: list it, and fetch single files as local copies."""

    @abstractmethod
    def list_artifacts(self) -> tuple[list[ArtifactEntry], bool]:
        """All files and folders (recursively), and whether the listing was cut short."""

    @abstractmethod
    def fetch(self, relative_path: str) -> Path | None:
        """A local path for one artifact file, or None when the model has no such file."""

    @property
    @abstractmethod
    def local_root(self) -> Path:
        """The local folder that mirrors the model's layout for the files fetched so far."""

    def read_text(self, relative_path: str, limit: int = 1_000_000) -> str | None:
        path = self.fetch(relative_path)
        if path is None:
            return None
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            return handle.read(limit)


class LocalModelFiles(ModelFiles):
    """A model folder on this machine (e.g. downloaded from Azure ML or another registry)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        if not self.root.is_dir():
            raise InvalidModelError(f"'{root}' is not a folder.")
        if not (self.root / "MLmodel").is_file():
            raise InvalidModelError(
                f"'{root}' has no MLmodel file, so it is not an MLflow model folder. Point at the "
                "folder that contains MLmodel (often a subfolder named 'model')."
            )

    @property
    def local_root(self) -> Path:
        return self.root

    def _inside(self, relative_path: str) -> Path:
        candidate = (self.root / safe_relative_path(relative_path)).resolve()
        if not candidate.is_relative_to(self.root):
            raise UnsafePathError(
                f"'{relative_path}' leads outside the model folder (a link?), so it is not read. "
                "Put the file itself in the model folder."
            )
        return candidate

    def fetch(self, relative_path: str) -> Path | None:
        path = self._inside(relative_path)
        return path if path.is_file() else None

    def list_artifacts(self) -> tuple[list[ArtifactEntry], bool]:
        entries: list[ArtifactEntry] = []
        for path in sorted(self.root.rglob("*")):
            if len(entries) >= MAX_LISTED_ARTIFACTS:
                return entries, True
            relative = path.relative_to(self.root).as_posix()
            # A symlink out of the folder is listed but never followed.
            if path.is_symlink() and not path.resolve().is_relative_to(self.root):
                entries.append(ArtifactEntry(relative, is_dir=False, size=None))
                continue
            is_dir = path.is_dir()
            entries.append(ArtifactEntry(relative, is_dir, None if is_dir else path.stat().st_size))
        return entries, False


class RegistryModelFiles(ModelFiles):
    """A model stored in an MLflow artifact store, fetched file by file into a cache folder.

    Only the files asked for are downloaded, so inspecting a multi-GB model stays cheap.
    """

    def __init__(self, uri: str, location: str, cache_root: Path, tracking_uri: str) -> None:
        self.uri = uri
        digest = hashlib.sha256(location.encode()).hexdigest()[:24]
        self.cache = cache_root / digest
        self.cache.mkdir(parents=True, exist_ok=True)
        try:
            self.repo = get_artifact_repository(location, tracking_uri=tracking_uri)
        except MlflowException as exc:
            raise InvalidModelError(f"Cannot open the artifacts of {uri}: {exc.message}") from exc

    @property
    def local_root(self) -> Path:
        return self.cache

    def fetch(self, relative_path: str) -> Path | None:
        relative = safe_relative_path(relative_path)
        target = self.cache / relative
        if target.is_file():
            return target
        parent = posixpath.dirname(relative)
        try:
            listed = {f.path for f in self.repo.list_artifacts(parent or None) if not f.is_dir}
        except (MlflowException, OSError):
            return None
        if relative not in listed:
            return None
        try:
            self.repo.download_artifacts(relative, dst_path=str(self.cache))
        except MlflowException as exc:
            if exc.error_code == ErrorCode.Name(INVALID_PARAMETER_VALUE):
                # MLflow refuses a file whose real path leaves the artifacts (a symlink out).
                raise UnsafePathError(
                    f"'{relative}' of {self.uri} leads outside the model's artifacts (a link?), "
                    "so it is not read. Re-log the model with the file itself."
                ) from exc
            message = f"Could not download '{relative}' of {self.uri}: {exc}"
            raise InvalidModelError(message) from exc
        except OSError as exc:
            message = f"Could not download '{relative}' of {self.uri}: {exc}"
            raise InvalidModelError(message) from exc
        return target if target.is_file() else None

    def list_artifacts(self) -> tuple[list[ArtifactEntry], bool]:
        entries: list[ArtifactEntry] = []
        pending = [None]
        while pending:
            folder = pending.pop()
            try:
                infos = self.repo.list_artifacts(folder)
            except MlflowException as exc:
                if folder is None:
                    message = f"Cannot list the artifacts of {self.uri}: {exc.message}"
                    raise InvalidModelError(message) from exc
                # A folder MLflow will not list (a link out of the artifacts): listed, not read.
                continue
            for info in infos:
                if len(entries) >= MAX_LISTED_ARTIFACTS:
                    return sorted(entries, key=lambda e: e.path), True
                entries.append(ArtifactEntry(info.path, info.is_dir, info.file_size))
                if info.is_dir:
                    pending.append(info.path)
        return sorted(entries, key=lambda e: e.path), False
