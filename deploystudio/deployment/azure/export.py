"""Export a configured online deployment as a folder a CI pipeline can deploy with no studio.

Layout (paths in the YAML are relative to the folder, as in Azure's examples):

    endpoint.yml      ManagedOnlineEndpoint (no traffic: the deployment does not exist yet;
                      `--all-traffic` on the deployment command sends it all)
    deployment.yml    ManagedOnlineDeployment
    model/            the MLflow model's files, unless the model is referenced as azureml:NAME:VER
    code/score.py     the scoring script, when the deployment has one
    conda.yaml        its environment (with the base image in deployment.yml)
    request.json      the version's input example as an Azure `input_data` request, for the
                      README's `az ml online-endpoint invoke` (absent when the model has none)
    README.md         the `az ml` commands and the equivalent Python: only files written here

The model is never given a version number guessed from our registry: its files go with no
version (Azure registers them as the name's next version), or it is `azureml:NAME:VERSION` with
the version the workspace gave (model_registration.py) or the user read there.

Both YAML files are loaded back with `load_online_endpoint` / `load_online_deployment` from the
folder itself before the export counts as done. Batch deployments have their own builder
(deployment/batch_azure.py); a batch export would write its YAML next to these.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploystudio.deployment.adaptive_batching import AZURE_NOTE
from deploystudio.deployment.azure.pinning import pin_conda
from deploystudio.deployment.azure.specs import (
    OnlineDeploymentSpec,
    OnlineEndpointSpec,
    deployment_entity,
    endpoint_entity,
)
from deploystudio.deployment.azure.yaml_dump import deployment_yaml, endpoint_yaml, load_back
from deploystudio.environments.build import Environment
from deploystudio.errors import AzureExportError, UnsafePathError

ENDPOINT_FILE = "endpoint.yml"
DEPLOYMENT_FILE = "deployment.yml"
CONDA_FILE = "conda.yaml"
CODE_FOLDER = "code"
MODEL_FOLDER = "model"
README_FILE = "README.md"
REQUEST_FILE = "request.json"


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    # Paths relative to `folder`, sorted.
    files: tuple[str, ...]
    endpoint: Any
    deployment: Any

    @property
    def commands(self) -> tuple[str, ...]:
        """The `az ml` commands, run from inside `folder`: create, then (with a request.json)
        call the endpoint."""
        return deploy_commands(self.endpoint.name, self.deployment.name, REQUEST_FILE in self.files)


def deploy_commands(endpoint: str, deployment: str, with_request: bool) -> tuple[str, ...]:
    create = (
        f"az ml online-endpoint create -f {ENDPOINT_FILE}",
        f"az ml online-deployment create -f {DEPLOYMENT_FILE} --all-traffic",
    )
    if not with_request:
        return create
    return (
        *create,
        f"az ml online-endpoint invoke --name {endpoint} --deployment-name {deployment} "
        f"--request-file {REQUEST_FILE}",
    )


def example_request_or_none(model_path: Path | None) -> dict | None:
    """The model's input example as an Azure request body (what request.json holds), or None
    when the model has none (the README then says how to write one)."""
    from deploystudio.errors import PayloadError
    from deploystudio.payloads import example_request

    if model_path is None:
        return None
    try:
        return example_request(model_path)
    except PayloadError:
        return None


def export_online(
    folder: Path | str,
    endpoint: OnlineEndpointSpec,
    deployment: OnlineDeploymentSpec,
    allowed_roots: Sequence[Path] | None = None,
    pinned: Environment | None = None,
    request: Mapping[str, Any] | None = None,
) -> ExportResult:
    """Write the export folder; return what was written and the entities loaded back from it.

    `folder` must not exist or be empty (nothing is overwritten) and, when `allowed_roots` is
    given (a page: the studio's data folder), lie inside one of them. On failure the files
    written so far are removed. `pinned`: the model environment the model ran in here
    (`pinning.pinned_environment`); the exported conda files (the bundle's, and the model folder's
    own, which Azure uses for a no-code deployment) then pin its exact versions and Python.
    `request`: the body written as request.json (`example_request_or_none`), which the README's
    invoke command sends; None writes no request.json and no invoke command.
    """
    if deployment.endpoint_name.lower() != endpoint.name.lower():
        raise AzureExportError(
            f"Deployment {deployment.name!r} belongs to endpoint {deployment.endpoint_name!r}, "
            f"not {endpoint.name!r}: export them together with the same endpoint name."
        )
    refuse_secret_variables(deployment.environment_variables)
    out = _prepare_folder(Path(folder), allowed_roots)
    # Both entities are built (every value checked) before anything is written. The endpoint
    # has no traffic: Azure refuses traffic to a deployment that does not exist yet, and
    # `--all-traffic` sets it once the deployment is up.
    endpoint_built = endpoint_entity(
        OnlineEndpointSpec(endpoint.name, endpoint.auth_mode, endpoint.description, endpoint.tags)
    )
    deployment_built = deployment_entity(deployment)
    created_here = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        return _write(out, endpoint_built, deployment, deployment_built, pinned, request)
    except BaseException:
        _clean(out, remove_folder=created_here)
        raise


# Names that hold credentials by convention, and values shaped like one (a storage connection
# string or SAS token, a PEM key, a JWT). A name part such as KEY alone is too common
# (KEY_COLUMN) to refuse; the compound forms are not.
_SECRET_NAME = re.compile(
    r"(^|_)(SECRET|PASSWORD|PASSWD|PWD|TOKEN|CREDENTIALS?|CONNECTION_?STRING|SAS|"
    r"(API|ACCESS|ACCOUNT|PRIVATE|SECRET|SUBSCRIPTION|SIGNING|ENCRYPTION|MASTER)_?KEY)(_|$)",
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(
    r"AccountKey=|SharedAccessKey=|SharedAccessSignature=|[?&]sig=|-----BEGIN [A-Z ]*PRIVATE"
    r"|\beyJ[\w-]{8,}\.[\w-]{8,}\.",
)
SECRETS_ON_AZURE = (
    "Keep secrets out of deployment.yml: store them in an Azure Key Vault and read them in the "
    "scoring script's init() with the endpoint's managed identity (azure-identity and "
    "azure-keyvault-secrets; pass only the vault URL and the secret's name with --env), or use "
    "Azure ML's secret injection, which resolves a reference to a workspace connection or a "
    "Key Vault secret when the deployment starts: "
    "https://learn.microsoft.com/azure/machine-learning/concept-secret-injection"
)


def refuse_secret_variables(variables: Mapping[str, str]) -> None:
    """Raise AzureExportError for a variable whose name or value looks like a credential: the
    export writes values in plain text into deployment.yml, which goes into CI and git."""
    for name, value in variables.items():
        if _SECRET_NAME.search(name) or _SECRET_VALUE.search(value or ""):
            raise AzureExportError(
                f"Environment variable {name} looks like a secret, and the export would write "
                f"its value in plain text into deployment.yml. {SECRETS_ON_AZURE}"
            )


def _write(
    out: Path,
    entity: Any,
    spec: OnlineDeploymentSpec,
    built: Any,
    pinned: Environment | None,
    request: Mapping[str, Any] | None,
) -> ExportResult:
    model: Any = None
    if spec.model.local_path is not None:
        _copy_tree(spec.model.local_path, _inside(out, MODEL_FOLDER))
        model_conda = _inside(out, f"{MODEL_FOLDER}/{CONDA_FILE}")
        if pinned is not None and model_conda.is_file():
            model_conda.write_text(pin_conda(model_conda.read_text(), pinned), encoding="utf-8")
        # No version: our registry's number may be taken in the workspace by another model
        # version (the deployment would then fail to register it). Without one, azure-ai-ml
        # registers the files as the name's next version when the deployment is created.
        model = {"name": spec.model.name, "path": MODEL_FOLDER, "type": "mlflow_model"}
    environment = code_configuration = None
    if spec.code is not None:
        code_folder = _inside(out, CODE_FOLDER)
        code_folder.mkdir()
        shutil.copyfile(
            spec.code.code_folder / spec.code.scoring_script,
            _inside(out, f"{CODE_FOLDER}/{spec.code.scoring_script}"),
        )
        conda_text = spec.code.conda_file.read_text(encoding="utf-8")
        if pinned is not None:
            conda_text = pin_conda(conda_text, pinned)
        _inside(out, CONDA_FILE).write_text(conda_text, encoding="utf-8")
        environment = {"conda_file": CONDA_FILE, "image": spec.code.image}
        code_configuration = {"code": CODE_FOLDER, "scoring_script": spec.code.scoring_script}
    _inside(out, ENDPOINT_FILE).write_text(endpoint_yaml(entity), encoding="utf-8")
    _inside(out, DEPLOYMENT_FILE).write_text(
        deployment_yaml(
            built, model=model, environment=environment, code_configuration=code_configuration
        ),
        encoding="utf-8",
    )
    from azure.ai.ml import load_online_deployment, load_online_endpoint

    try:
        loaded_endpoint = load_back(_inside(out, ENDPOINT_FILE), load_online_endpoint)
        loaded_deployment = load_back(_inside(out, DEPLOYMENT_FILE), load_online_deployment)
    except ValueError as exc:
        raise AzureExportError(
            f"azure-ai-ml does not load the exported YAML: {exc}. Check the settings."
        ) from exc
    if request is not None:
        _inside(out, REQUEST_FILE).write_text(
            json.dumps(request, indent=2) + "\n", encoding="utf-8"
        )
    _inside(out, README_FILE).write_text(
        readme(entity.name, spec, with_request=request is not None), encoding="utf-8"
    )
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    return ExportResult(out, tuple(files), loaded_endpoint, loaded_deployment)


def _prepare_folder(folder: Path, allowed_roots: Sequence[Path] | None) -> Path:
    if "\x00" in str(folder):
        # The OS cannot take a NUL byte in a path: resolve() would raise ValueError.
        raise UnsafePathError(f"{str(folder)!r} contains a NUL byte: choose a real folder.")
    out = folder.expanduser().resolve()
    if allowed_roots is not None and not any(
        out.is_relative_to(Path(root).resolve()) for root in allowed_roots
    ):
        shown = ", ".join(str(r) for r in allowed_roots) or "none"
        raise UnsafePathError(
            f"{folder} is outside the folders an export may be written to ({shown}): choose a "
            "folder inside them."
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AzureExportError(
            f"{out} already exists and is not an empty folder: choose a new folder (nothing is "
            "overwritten)."
        )
    return out


def _inside(out: Path, relative: str) -> Path:
    """`out / relative`, refusing anything that resolves outside `out` (a symlink planted in the
    folder while exporting, say)."""
    path = out / relative
    if not path.resolve().is_relative_to(out):
        raise UnsafePathError(f"{path} leads outside the export folder {out}; nothing written.")
    return path


def _copy_tree(source: Path, target: Path) -> None:
    # symlinks=True copies links as links: the model's own files are what Azure must upload, and
    # a link's target is not written to.
    try:
        shutil.copytree(source, target, symlinks=True)
    except (OSError, shutil.Error) as exc:
        raise AzureExportError(f"Could not copy the model from {source}: {exc}") from exc


def _clean(out: Path, remove_folder: bool) -> None:
    if remove_folder:
        shutil.rmtree(out, ignore_errors=True)
        return
    for child in out.iterdir() if out.is_dir() else ():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def readme(endpoint_name: str, spec: OnlineDeploymentSpec, with_request: bool = False) -> str:
    """How to deploy the folder: `az ml` commands, then the same steps in Python. Every file a
    command names is one the export writes (`request.json` only `with_request`)."""
    if spec.model.azure_reference is not None:
        model_note = (
            f"The deployment uses `{spec.model.azure_reference}`, a model version registered in "
            "the workspace."
        )
    else:
        model_note = (
            f"`{MODEL_FOLDER}/` holds the MLflow model; Azure uploads it and registers it as the "
            f"next version of `{spec.model.name}` when the deployment is created."
        )
    script_note = (
        f"`{CODE_FOLDER}/{spec.code.scoring_script}` is the scoring script; `{CONDA_FILE}` its "
        f"environment on `{spec.code.image}`."
        if spec.code is not None
        else "No scoring script: Azure serves the MLflow model directly (no-code deployment)."
    )
    env_note = (
        "\n`deployment.yml` holds environment variable values: treat it as a secret.\n"
        if spec.environment_variables
        else ""
    )
    deployment_name = spec.name
    listed = deploy_commands(endpoint_name, deployment_name, with_request)
    commands = "\n".join(f"    {command}" for command in listed)
    request_note = (
        f"`{REQUEST_FILE}` is the model's input example as an Azure `input_data` request.\n"
        if with_request
        else "The model has no input example, so no request file was written: to call the "
        'endpoint, send a body such as `{"input_data": {"columns": [...], "data": [[...]]}}`.\n'
    )
    python_invoke = (
        f"print(ml_client.online_endpoints.invoke(\n"
        f'    endpoint_name="{endpoint_name}", deployment_name="{deployment_name}", '
        f'request_file="{REQUEST_FILE}"\n))\n'
        if with_request
        else ""
    )
    return f"""# Azure ML online deployment {endpoint_name}/{deployment_name}

Exported by Deploy Studio. Paths in the YAML files are relative to this folder.
{model_note}
{script_note}
{request_note}{env_note}
{AZURE_NOTE}

## With the Azure CLI (`az extension add -n ml`), from this folder

    az configure --defaults group=RESOURCE_GROUP workspace=WORKSPACE
{commands}

## With the Python SDK (azure-ai-ml, azure-identity), from this folder

```python
from azure.ai.ml import MLClient, load_online_deployment, load_online_endpoint
from azure.identity import DefaultAzureCredential

ml_client = MLClient(
    DefaultAzureCredential(), "SUBSCRIPTION_ID", "RESOURCE_GROUP", "WORKSPACE"
)
endpoint = load_online_endpoint("{ENDPOINT_FILE}")
ml_client.online_endpoints.begin_create_or_update(endpoint).result()
deployment = load_online_deployment("{DEPLOYMENT_FILE}")
ml_client.online_deployments.begin_create_or_update(deployment).result()
endpoint.traffic = {{"{deployment_name}": 100}}
ml_client.online_endpoints.begin_create_or_update(endpoint).result()
{python_invoke}```
"""
