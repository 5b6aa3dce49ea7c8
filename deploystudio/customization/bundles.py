"""Scoring bundles: a score.py and its environment saved together as a named, numbered version
under the studio's data folder, attachable to a model version and exported as an Azure ML
deployment (a zip with the deployment YAML that references them).

Layout: `<root>/<name>/<version>/{score.py, conda.yaml, bundle.json}`. A version folder appears
in one rename once complete, and its number is never given out twice: deleting a version
leaves a tombstone, so a model version tag `name:3` can never come to mean other content.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from azure.ai.ml import load_online_deployment
from azure.ai.ml.entities import CodeConfiguration, Environment, ManagedOnlineDeployment, Model

from deploystudio.config import Settings
from deploystudio.customization.script_environment import EnvironmentSpec, validate_environment
from deploystudio.deployment.actors import local_user
from deploystudio.deployment.azure.model_reference import azure_model_reference
from deploystudio.deployment.azure.yaml_dump import (
    ONLINE_DEPLOYMENT_SCHEMA,
    deployment_yaml,
    load_back,
)
from deploystudio.errors import BundleError, InvalidModelUriError
from deploystudio.model_uri import ModelUriKind, parse_model_uri
from deploystudio.registry import Registry

SCORING_BUNDLE_TAG = "deploystudio.scoring_bundle"
SCRIPT_FILE = "score.py"
CONDA_FILE = "conda.yaml"
METADATA_FILE = "bundle.json"
DEPLOYMENT_FILE = "deployment.yml"
README_FILE = "README.md"
LOCAL_MODEL_FOLDER = "model"
# Left in a deleted version's folder so its number stays taken.
TOMBSTONE_FILE = ".deleted"
DEPLOYMENT_SCHEMA = ONLINE_DEPLOYMENT_SCHEMA
NAME_RULE = (
    "3-32 characters: letters, digits and single dashes, starting with a letter and not "
    "ending with a dash (Azure ML's rule for names)"
)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*$")
# Azure ML asset names (models): what `azureml:NAME:VERSION` may hold.
_INSTANCE_TYPE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
# The code snapshot Azure uploads is the zip's folder: keep it to the script alone.
_AMLIGNORE = f"{LOCAL_MODEL_FOLDER}/\n{DEPLOYMENT_FILE}\n{README_FILE}\n{CONDA_FILE}\n"


@dataclass(frozen=True)
class Bundle:
    name: str
    version: int
    model_uri: str
    template: str
    base_image: str
    created_at: datetime
    note: str
    validated: bool
    path: Path
    validation_summary: str = ""
    # Who saved it: the signed-in user, or the OS user (as the CLI signs); "" in older bundles.
    saved_by: str = ""

    @property
    def label(self) -> str:
        """How a model version's tag names this bundle."""
        return f"{self.name}:{self.version}"

    def script(self) -> str:
        return self._read(SCRIPT_FILE)

    def conda_yaml(self) -> str:
        return self._read(CONDA_FILE)

    def environment(self) -> EnvironmentSpec:
        return EnvironmentSpec(conda_yaml=self.conda_yaml(), base_image=self.base_image)

    def _read(self, file_name: str) -> str:
        try:
            return (self.path / file_name).read_text(encoding="utf-8")
        except OSError as exc:
            raise BundleError(
                f"Bundle {self.label} has no readable {file_name} (was it deleted?). "
                "Reload the list of bundles."
            ) from exc


def check_name(name: str, what: str = "Bundle name") -> str:
    """`name` if it follows Azure's rule for names, else BundleError quoting the rule.

    Every path under the store is built from a name that passed here, so none can leave it.
    """
    if not isinstance(name, str) or not 3 <= len(name) <= 32 or not _NAME.match(name):
        raise BundleError(f"{what} '{name}' is not allowed: use {NAME_RULE}.")
    return name


def _check_version(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BundleError(f"Bundle version '{version}' is not allowed: use a whole number from 1.")
    return version


class BundleStore:
    """Bundles saved under one folder (normally `settings.home / "bundles"`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def save(
        self,
        name: str,
        script: str,
        environment: EnvironmentSpec,
        model_uri: str,
        template: str,
        note: str = "",
        validated: bool = False,
        validation_summary: str = "",
        saved_by: str | None = None,
    ) -> Bundle:
        """Save the next version of `name`; nothing is left behind when saving fails.

        `saved_by` names who saved it (the OS user when None, as audit entries are signed)."""
        check_name(name)
        problems = validate_environment(environment)
        if problems:
            raise BundleError("The environment cannot be saved yet: " + " ".join(problems))
        try:
            parse_model_uri(model_uri)
        except InvalidModelUriError as exc:
            raise BundleError(f"The bundle's model: {exc}") from exc
        metadata = {
            "name": name,
            "version": 0,
            "model_uri": model_uri.strip(),
            "template": template,
            "base_image": environment.base_image.strip(),
            "created_at": datetime.now(UTC).isoformat(),
            "note": note,
            "validated": bool(validated),
            "validation_summary": validation_summary,
            "saved_by": saved_by or local_user(),
        }
        folder = self.root / name
        try:
            folder.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=folder, prefix=".saving-"))
        except OSError as exc:
            raise BundleError(f"Cannot write bundles under {self.root}: {exc}") from exc
        try:
            (staging / SCRIPT_FILE).write_text(script, encoding="utf-8")
            (staging / CONDA_FILE).write_text(environment.conda_yaml, encoding="utf-8")
            version = self._claim_version(folder, staging, metadata)
        except (OSError, UnicodeError) as exc:
            raise BundleError(f"Could not save bundle '{name}': {exc}. Nothing was saved.") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.get(name, version)

    def _claim_version(self, folder: Path, staging: Path, metadata: dict) -> int:
        """Rename the complete staging folder to the next free number.

        A rename onto a non-empty folder fails, so two concurrent saves cannot both take a
        number: the loser writes its metadata again with the next one and retries.
        """
        version = max(_numbered(folder), default=0) + 1
        while True:
            metadata["version"] = version
            (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2), encoding="utf-8")
            try:
                os.rename(staging, folder / str(version))
                return version
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                version += 1

    def identical(
        self, name: str, script: str, environment: EnvironmentSpec, model_uri: str
    ) -> Bundle | None:
        """The newest version of `name` with this very script, environment and model, if any:
        saving again would only add a copy (the page asks first)."""
        for bundle in self.versions(name):
            try:
                same = (
                    bundle.model_uri == model_uri.strip()
                    and bundle.base_image == environment.base_image.strip()
                    and bundle.script() == script
                    and bundle.conda_yaml() == environment.conda_yaml
                )
            except BundleError:  # deleted while this ran
                continue
            if same:
                return bundle
        return None

    def list_bundles(self) -> list[Bundle]:
        """Every bundle, by name, newest version first within a name."""
        if not self.root.is_dir():
            return []
        names = sorted(p.name for p in self.root.iterdir() if p.is_dir() and _is_name(p.name))
        return [bundle for name in names for bundle in self.versions(name)]

    def versions(self, name: str) -> list[Bundle]:
        """The saved versions of one bundle, newest first (empty for an unknown name)."""
        folder = self.root / check_name(name)
        bundles = (_load(folder / str(v)) for v in sorted(_numbered(folder), reverse=True))
        return [b for b in bundles if b is not None]

    def get(self, name: str, version: int | None = None) -> Bundle:
        """One version of a bundle; the latest when `version` is None."""
        saved = self.versions(name)
        if version is not None:
            _check_version(version)
            saved = [b for b in saved if b.version == version]
        if saved:
            return saved[0]
        return self._missing(name, version)

    def delete(self, name: str, version: int) -> None:
        """Delete one version; its number is not reused by later saves."""
        bundle = self.get(name, _check_version(version))
        try:
            (bundle.path / TOMBSTONE_FILE).touch()
            # bundle.json first: from here on the version is no longer listed.
            (bundle.path / METADATA_FILE).unlink()
            for child in bundle.path.iterdir():
                if child.name == TOMBSTONE_FILE:
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        except OSError as exc:
            raise BundleError(f"Could not delete bundle {bundle.label}: {exc}") from exc

    def _missing(self, name: str, version: int | None) -> Bundle:
        existing = self.versions(name)
        if existing and version is not None:
            numbers = ", ".join(str(b.version) for b in existing)
            raise BundleError(f"Bundle '{name}' has no version {version}; it has {numbers}.")
        names = sorted({b.name for b in self.list_bundles()})
        known = f"saved bundles: {', '.join(names)}" if names else "no bundles are saved yet"
        raise BundleError(f"There is no bundle named '{name}' ({known}).")


def bundle_store(settings: Settings) -> BundleStore:
    return BundleStore(settings.home / "bundles")


def _is_name(text: str) -> bool:
    try:
        check_name(text)
    except BundleError:
        return False
    return True


def _numbered(folder: Path) -> list[int]:
    """Version numbers taken in `folder`, tombstones included."""
    if not folder.is_dir():
        return []
    return [int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.name[0] != "0"]


def _load(path: Path) -> Bundle | None:
    try:
        data = json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))
        return Bundle(
            name=data["name"],
            version=int(data["version"]),
            model_uri=data["model_uri"],
            template=data["template"],
            base_image=data["base_image"],
            created_at=datetime.fromisoformat(data["created_at"]),
            note=data.get("note", ""),
            validated=bool(data.get("validated", False)),
            path=path,
            validation_summary=data.get("validation_summary", ""),
            saved_by=data.get("saved_by", ""),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # deleted, or being deleted, or not a bundle folder


def attach_bundle(registry: Registry, bundle: Bundle, model_uri: str) -> None:
    """Tag the registered version `model_uri` names with this bundle (`name:version`).

    The tag is the only record of the attachment: bundle.json does not repeat it, so the
    registry alone answers "which bundle goes with this version".
    """
    try:
        reference = parse_model_uri(model_uri)
    except InvalidModelUriError as exc:
        raise BundleError(_attach_help(model_uri)) from exc
    if reference.kind is ModelUriKind.REGISTERED_ALIAS:
        version = registry.resolve_alias(reference.name, reference.alias)
    elif reference.kind is ModelUriKind.REGISTERED_VERSION:
        version = reference.version
    else:
        raise BundleError(_attach_help(model_uri))
    if not (bundle.path / METADATA_FILE).is_file():
        raise BundleError(f"Bundle {bundle.label} no longer exists; save it again to attach it.")
    registry.set_version_tag(reference.name, version, SCORING_BUNDLE_TAG, bundle.label)


def _attach_help(model_uri: str) -> str:
    return (
        f"A bundle attaches to a registered model version, and '{model_uri}' is not one: "
        "use models:/NAME/VERSION or models:/NAME@ALIAS."
    )


def bundle_zip(
    bundle: Bundle,
    endpoint_name: str = "my-endpoint",
    deployment_name: str = "blue",
    instance_type: str = "Standard_DS3_v2",
) -> bytes:
    """A zip with score.py, conda.yaml, an Azure ML deployment.yml that references them, and a
    README saying how to deploy it with `az ml online-deployment create -f deployment.yml`."""
    check_name(endpoint_name, "Endpoint name")
    check_name(deployment_name, "Deployment name")
    if not _INSTANCE_TYPE.match(instance_type):
        raise BundleError(
            f"Instance type '{instance_type}' is not an Azure VM size: use one like "
            "Standard_DS3_v2."
        )
    script, conda_yaml = bundle.script(), bundle.conda_yaml()
    problems = validate_environment(EnvironmentSpec(conda_yaml, bundle.base_image))
    if problems:
        raise BundleError(f"Bundle {bundle.label} cannot be exported: " + " ".join(problems))
    azure_model = azure_model_reference(bundle.model_uri)
    with tempfile.TemporaryDirectory(prefix="deploystudio-bundle-") as work:
        folder = Path(work)
        (folder / SCRIPT_FILE).write_text(script, encoding="utf-8")
        (folder / CONDA_FILE).write_text(conda_yaml, encoding="utf-8")
        (folder / LOCAL_MODEL_FOLDER).mkdir()
        deployment_yaml = _deployment_yaml(
            folder, bundle, azure_model, endpoint_name, deployment_name, instance_type
        )
        files = {
            SCRIPT_FILE: script,
            CONDA_FILE: conda_yaml,
            DEPLOYMENT_FILE: deployment_yaml,
            README_FILE: _readme(bundle, azure_model, endpoint_name, deployment_name),
            ".amlignore": _AMLIGNORE,
        }
    stamp = bundle.created_at.astimezone(UTC).timetuple()[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file_name, text in files.items():
            archive.writestr(zipfile.ZipInfo(file_name, stamp), text.encode("utf-8"))
        if azure_model is None:
            # An empty folder the README asks to fill with the MLflow model.
            archive.writestr(zipfile.ZipInfo(f"{LOCAL_MODEL_FOLDER}/", stamp), b"")
    return buffer.getvalue()


def _deployment_yaml(
    folder: Path,
    bundle: Bundle,
    azure_model: str | None,
    endpoint_name: str,
    deployment_name: str,
    instance_type: str,
) -> str:
    """The deployment built with azure-ai-ml's entities, written by the shared
    `azure_yaml.deployment_yaml` with `conda_file` and the local model folder relative to the
    YAML, then loaded back with `load_online_deployment` to prove Azure's own loader accepts it.
    """
    try:
        environment = Environment(conda_file=str(folder / CONDA_FILE), image=bundle.base_image)
        model = azure_model or Model(path=str(folder / LOCAL_MODEL_FOLDER), type="mlflow_model")
        deployment = ManagedOnlineDeployment(
            name=deployment_name,
            endpoint_name=endpoint_name,
            model=model,
            code_configuration=CodeConfiguration(code=".", scoring_script=SCRIPT_FILE),
            environment=environment,
            instance_type=instance_type,
            instance_count=1,
        )
        text = deployment_yaml(
            deployment,
            environment={"conda_file": CONDA_FILE, "image": bundle.base_image},
            model=None
            if azure_model is not None
            else {"path": f"{LOCAL_MODEL_FOLDER}/", "type": "mlflow_model"},
        )
    except Exception as exc:  # azure-ai-ml raises its own ValidationException family
        raise BundleError(f"azure-ai-ml refused the deployment of {bundle.label}: {exc}") from exc
    (folder / DEPLOYMENT_FILE).write_text(text, encoding="utf-8")
    try:
        load_back(folder / DEPLOYMENT_FILE, load_online_deployment)
    except ValueError as exc:
        raise BundleError(
            f"The exported deployment.yml of {bundle.label} does not load in azure-ai-ml: {exc}. "
            "Check the base image and conda.yaml."
        ) from exc
    return text


def _readme(
    bundle: Bundle, azure_model: str | None, endpoint_name: str, deployment_name: str
) -> str:
    if azure_model is not None:
        _, name, version = azure_model.split(":")
        model_step = (
            f"The deployment uses the model registered in your workspace as `{azure_model}`.\n"
            "   If it is not there yet, register the MLflow model folder (the one with the "
            "MLmodel file)\n   under that name and version:\n\n"
            f"       az ml model create --name {name} --version {version} "
            "--type mlflow_model --path PATH/TO/MODEL\n"
        )
    else:
        model_step = (
            f"`{bundle.model_uri}` is not a registered version Azure can name, so the\n"
            f"   deployment takes the model from the `{LOCAL_MODEL_FOLDER}/` folder: copy the "
            "MLflow model folder's\n   contents (MLmodel and the files beside it) into it.\n"
        )
    note = f"\nNote: {bundle.note}\n" if bundle.note else ""
    validated = "yes" if bundle.validated else "no"
    return f"""# Scoring bundle {bundle.label}

Model: `{bundle.model_uri}`. Template: {bundle.template}.
Saved {bundle.created_at:%Y-%m-%d %H:%M} UTC.
Validated with the Azure ML inference server before saving: {validated}.
Saved by: {bundle.saved_by or "not recorded"}.
{note}
Files:
- `{SCRIPT_FILE}`: the scoring script;
- `{CONDA_FILE}`: its environment, built on the image `{bundle.base_image}`;
- `{DEPLOYMENT_FILE}`: the Azure ML online deployment that references both (paths are
  relative to it);
- `.amlignore`: keeps the code Azure uploads to the script alone.

## Deploy with the Azure CLI (`az extension add -n ml`)

Set your workspace once: `az configure --defaults group=RESOURCE_GROUP workspace=WORKSPACE`.

1. {model_step}
2. Create the endpoint if it does not exist yet:

       az ml online-endpoint create --name {endpoint_name}

3. Create the deployment from this folder and send it all traffic:

       az ml online-deployment create -f {DEPLOYMENT_FILE} --all-traffic

4. Test it with a JSON file holding a request body such as `{{"input_data": ...}}`:

       az ml online-endpoint invoke --name {endpoint_name} --deployment-name {deployment_name} \\
           --request-file request.json
"""
