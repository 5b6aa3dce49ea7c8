"""Which Azure ML workspace to talk to, with which credential, and a connection test.

Each of the three values (subscription, resource group, workspace) comes from the first source
that has it, in this order: the page's form, `.streamlit/secrets.toml` `[azure]`, environment
variables, an Azure ML `config.json`. The source of every value is kept so a page can say
"from secrets.toml". The credential is azure-identity's `DefaultAzureCredential`.

Environment variable names, first match wins:
- subscription: AZURE_SUBSCRIPTION_ID (the Azure SDKs' and azure-identity samples' name), then
  AZUREML_ARM_SUBSCRIPTION (set by Azure ML inside its own jobs and compute instances);
- resource group: AZURE_RESOURCE_GROUP, AZUREML_ARM_RESOURCEGROUP, AZURE_DEFAULTS_GROUP (what
  `az configure --defaults group=...` means when given as an environment variable);
- workspace: AZUREML_WORKSPACE_NAME, AZURE_WORKSPACE_NAME (common in Azure ML samples),
  AZUREML_ARM_WORKSPACE_NAME, AZURE_DEFAULTS_WORKSPACE (`az configure --defaults workspace=`).

Tokens are never returned, kept, shown or logged: `test_connection` asks for one only to learn
whether the credential works.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploystudio.config import SECRETS_FILE, read_secrets_section
from deploystudio.errors import AzureConnectionError, AzureWorkspaceError, UnsafePathError

ARM_SCOPE = "https://management.azure.com/.default"
FIELDS = ("subscription_id", "resource_group", "workspace_name")
ENV_NAMES: dict[str, tuple[str, ...]] = {
    "subscription_id": ("AZURE_SUBSCRIPTION_ID", "AZUREML_ARM_SUBSCRIPTION"),
    "resource_group": ("AZURE_RESOURCE_GROUP", "AZUREML_ARM_RESOURCEGROUP", "AZURE_DEFAULTS_GROUP"),
    "workspace_name": (
        "AZUREML_WORKSPACE_NAME",
        "AZURE_WORKSPACE_NAME",
        "AZUREML_ARM_WORKSPACE_NAME",
        "AZURE_DEFAULTS_WORKSPACE",
    ),
}
SECRETS_SECTION = "azure"
SOURCE_FORM = "settings form"
SOURCE_SECRETS = "secrets.toml"
# Where MLClient.from_config looks inside a folder; it would also climb up to 20 parent folders,
# which could pick up another project's workspace, so only these places are read here.
CONFIG_LOCATIONS = ("config.json", ".azureml/config.json", "aml_config/config.json")
SIGN_IN_HELP = (
    "Sign in with `az login` (Azure CLI), or set AZURE_TENANT_ID, AZURE_CLIENT_ID and "
    "AZURE_CLIENT_SECRET for a service principal, or run where a managed identity is assigned."
)


@dataclass(frozen=True)
class AzureWorkspace:
    """The three values that name a workspace, and where each one came from."""

    subscription_id: str
    resource_group: str
    workspace_name: str
    # Field name -> "settings form", "secrets.toml", "env AZURE_SUBSCRIPTION_ID", "config.json ...".
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace_name}"
        )

    @classmethod
    def from_arm_id(cls, arm_id: str) -> AzureWorkspace:
        """The workspace an `arm_id` names (the inverse of the property above)."""
        parts = arm_id.strip("/").split("/")
        return cls(parts[1], parts[3], parts[7])

    def describe(self) -> str:
        return ", ".join(
            f"{name} {getattr(self, name)!r} (from {self.sources.get(name, 'caller')})"
            for name in FIELDS
        )


@dataclass(frozen=True)
class CredentialAttempt:
    """One credential of the chain that was tried, and why it gave no token."""

    name: str
    reason: str


@dataclass(frozen=True)
class ConnectionReport:
    """What a connection test found. Never holds a token or key."""

    ok: bool
    workspace: AzureWorkspace
    message: str
    # The credential class that produced the token (e.g. "AzureCliCredential"), if any.
    credential: str | None = None
    tried: tuple[CredentialAttempt, ...] = ()
    location: str | None = None
    mlflow_tracking_uri: str | None = None


def resolve_workspace(
    form: Mapping[str, str | None] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    secrets_path: Path | None = None,
    config_roots: Sequence[Path] = (),
    config_path: Path | str | None = None,
) -> AzureWorkspace:
    """The workspace from form > secrets.toml > environment > config.json, per value.

    `config_roots` are the folders a config.json may be read from (the project folder and the
    studio's data folder); `config_path`, if given, must lie inside one of them.
    Raises AzureWorkspaceError naming the missing values and where to set them.
    """
    env = os.environ if environ is None else environ
    values: dict[str, str] = {}
    sources: dict[str, str] = {}

    def offer(name: str, value: Any, source: str) -> None:
        if name not in values and isinstance(value, str | int) and str(value).strip():
            values[name] = str(value).strip()
            sources[name] = source

    for name in FIELDS:
        offer(name, (form or {}).get(name), SOURCE_FORM)
    section = _secrets_section(SECRETS_FILE if secrets_path is None else Path(secrets_path))
    for name in FIELDS:
        offer(name, section.get(name), SOURCE_SECRETS)
    for name in FIELDS:
        for variable in ENV_NAMES[name]:
            offer(name, env.get(variable), f"env {variable}")
    if len(values) < len(FIELDS):
        found = find_config_file(config_roots, config_path)
        if found is not None:
            for name, value in zip(FIELDS, _config_values(found), strict=True):
                offer(name, value, f"config.json {found}")
    missing = [name for name in FIELDS if name not in values]
    if missing:
        raise AzureWorkspaceError(
            f"The Azure ML workspace is not fully set: {', '.join(missing)} missing. Fill in the "
            f"Azure settings form, or add them under [{SECRETS_SECTION}] in {SECRETS_FILE}, or "
            "set " + ", ".join(ENV_NAMES[name][0] for name in missing) + ", or put the "
            "workspace's config.json (Azure portal > workspace > Download config.json) in the "
            "project folder."
        )
    return AzureWorkspace(**values, sources=sources)


def find_config_file(roots: Sequence[Path], config_path: Path | str | None = None) -> Path | None:
    """An Azure ML config.json inside one of `roots`, or None.

    An explicit `config_path` outside every root raises UnsafePathError: a form must not make
    the studio read any file on the machine.
    """
    resolved_roots = [Path(root).resolve() for root in roots]
    if config_path is not None:
        if "\x00" in str(config_path):
            # The OS cannot take a NUL byte in a path: resolve() would raise ValueError.
            raise UnsafePathError(f"{str(config_path)!r} contains a NUL byte: give a real path.")
        path = Path(config_path).expanduser().resolve()
        if not any(path.is_relative_to(root) for root in resolved_roots):
            shown = ", ".join(str(r) for r in resolved_roots) or "no folder"
            raise UnsafePathError(
                f"{config_path} is outside the folders a config.json is read from ({shown}): "
                "copy it into the project folder."
            )
        if not path.is_file():
            raise AzureWorkspaceError(f"There is no config.json at {path}.")
        return path
    for root in resolved_roots:
        for relative in CONFIG_LOCATIONS:
            candidate = root / relative
            if candidate.is_file():
                return candidate
    return None


def _config_values(path: Path) -> tuple[str, str, str]:
    from azure.ai.ml import MLClient

    try:
        # MLClient.from_config's own reader (handles both the three keys and the "Scope" form);
        # from_config itself would build a client and search parent folders.
        return MLClient._get_workspace_info(str(path))
    except (OSError, ValueError, IndexError) as exc:
        raise AzureWorkspaceError(
            f"{path} is not an Azure ML config.json: {exc}. Download it again from the portal."
        ) from exc
    except Exception as exc:  # azure-ai-ml's ValidationException: keys missing
        raise AzureWorkspaceError(
            f"{path} lacks subscription_id, resource_group or workspace_name: download the "
            "workspace's config.json again from the Azure portal."
        ) from exc


def _secrets_section(path: Path) -> Mapping[str, Any]:
    try:
        return read_secrets_section(SECRETS_SECTION, path)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AzureWorkspaceError(f"Cannot read {path}: {exc}. Fix the TOML syntax.") from exc


def default_credential() -> Any:
    """azure-identity's DefaultAzureCredential: service principal env vars, workload or managed
    identity, Azure CLI / PowerShell / Developer CLI logins, in that library's order."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def ml_client(workspace: AzureWorkspace, credential: Any = None, transport: Any = None) -> Any:
    """An `azure.ai.ml.MLClient` for the workspace. Makes no network call by itself.

    `transport` is an azure-core HttpTransport (tests pass a fake one; None means the real
    network).
    """
    from azure.ai.ml import MLClient

    kwargs = {"transport": transport} if transport is not None else {}
    return MLClient(
        credential=credential if credential is not None else default_credential(),
        subscription_id=workspace.subscription_id,
        resource_group_name=workspace.resource_group,
        workspace_name=workspace.workspace_name,
        **kwargs,
    )


def test_connection(
    workspace: AzureWorkspace, credential: Any = None, transport: Any = None
) -> ConnectionReport:
    """Get a token, then read the workspace; report which credential worked or what to do.

    Never raises for an Azure failure: the report says what went wrong (ok=False).
    """
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
    )
    from azure.identity import CredentialUnavailableError

    credential = credential if credential is not None else default_credential()
    try:
        # The token is dropped at once: only whether one came back matters here.
        credential.get_token(ARM_SCOPE)
    except (CredentialUnavailableError, ClientAuthenticationError) as exc:
        tried = attempted_credentials(credential, exc)
        names = ", ".join(a.name for a in tried) or type(credential).__name__
        return ConnectionReport(
            ok=False,
            workspace=workspace,
            tried=tried,
            message=f"No credential could sign in to Azure (tried {names}). {SIGN_IN_HELP}",
        )
    used = successful_credential(credential)
    client = ml_client(workspace, credential, transport)
    try:
        found = client.workspaces.get(workspace.workspace_name)
    except ClientAuthenticationError:
        message = (
            f"{used} got a token, but Azure refused it (401) for {workspace.describe()}: the "
            "token may be for another tenant. Set AZURE_TENANT_ID or `az login --tenant ...`."
        )
        return ConnectionReport(False, workspace, message, credential=used)
    except ResourceNotFoundError:
        message = (
            f"{used} signed in, but there is no workspace {workspace.workspace_name!r} in "
            f"resource group {workspace.resource_group!r} of subscription "
            f"{workspace.subscription_id!r}. Check the three values "
            f"({workspace.describe()})."
        )
        return ConnectionReport(False, workspace, message, credential=used)
    except HttpResponseError as exc:
        return ConnectionReport(
            False, workspace, _http_failure(used, workspace, exc), credential=used
        )
    except ServiceRequestError as exc:
        message = f"Azure could not be reached ({exc.message}). Check the network or proxy."
        return ConnectionReport(False, workspace, message, credential=used)
    return ConnectionReport(
        ok=True,
        workspace=workspace,
        credential=used,
        message=f"Connected to workspace {found.name!r} ({found.location}) with {used}.",
        location=found.location,
        mlflow_tracking_uri=getattr(found, "mlflow_tracking_uri", None),
    )


def _http_failure(used: str, workspace: AzureWorkspace, exc: Any) -> str:
    if exc.status_code == 403:
        return (
            f"{used} signed in, but has no access to workspace {workspace.workspace_name!r} "
            "(403). Ask an owner for the 'AzureML Data Scientist' role on it, or sign in as "
            "another identity."
        )
    return (
        f"Reading workspace {workspace.workspace_name!r} failed ({exc.status_code}): "
        f"{exc.reason}. Try again later."
    )


def successful_credential(credential: Any) -> str:
    """The class name of the credential that produced the last token.

    Chained credentials (DefaultAzureCredential) remember it in `_successful_credential`; the
    chain has no public accessor for it.
    """
    inner = getattr(credential, "_successful_credential", None)
    return type(inner if inner is not None else credential).__name__


def attempted_credentials(credential: Any, exc: Exception) -> tuple[CredentialAttempt, ...]:
    """Each credential the chain tried and why it failed, from azure-identity's own message
    (its "Attempted credentials:" block: one tab-indented `Name: reason` line each)."""
    message = getattr(exc, "message", None) or str(exc)
    attempts: list[CredentialAttempt] = []
    seen: set[str] = set()
    block = message.split("Attempted credentials:", 1)
    if len(block) == 2:
        # azure-identity repeats the whole block once; the first copy is enough.
        for line in block[1].split("Attempted credentials:", 1)[0].splitlines():
            name, sep, reason = line.strip().partition(": ")
            if line.startswith("\t") and sep and name.isidentifier() and name not in seen:
                seen.add(name)
                # The last reason runs into the repeated header ("X failed to retrieve...").
                reason = reason.split(f"{type(credential).__name__} failed", 1)[0]
                attempts.append(CredentialAttempt(name, reason.strip()))
    if not attempts:
        chain = getattr(credential, "credentials", None) or (credential,)
        attempts = [CredentialAttempt(type(c).__name__, message.splitlines()[0]) for c in chain]
    return tuple(attempts)


def connection_error(report: ConnectionReport) -> AzureConnectionError:
    """The report of a failed test as an error to raise (CLI, targets)."""
    return AzureConnectionError(report.message)
