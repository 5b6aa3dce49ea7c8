"""`deploystudio azure export` and `deploystudio azure test-connection`.

Export needs no Azure access, unless it is asked to `--register` the model in the workspace (the
version Azure gives it is what the export then references); test-connection asks
DefaultAzureCredential for a token and reads the workspace, printing which credential worked
(never the token).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from deploystudio.config import Settings
from deploystudio.errors import AzureSpecError

if TYPE_CHECKING:  # imported where used: the CLI's parser imports this module at start
    from deploystudio.deployment.azure.workspace import AzureWorkspace

EXIT_FAILED = 1


def _registered_version(args: argparse.Namespace, settings: Settings) -> str:
    """Register the model in the workspace now; the version Azure gave it."""
    from deploystudio.deployment.azure.model_registration import register_model
    from deploystudio.deployment.azure.workspace import ml_client
    from deploystudio.model_uri import ModelUriKind, parse_model_uri
    from deploystudio.prediction import local_model_path

    reference = parse_model_uri(args.model)
    if reference.kind not in (ModelUriKind.REGISTERED_VERSION, ModelUriKind.REGISTERED_ALIAS):
        raise AzureSpecError("--register takes a registered model (models:/NAME/VERSION).")
    workspace = _workspace(args, settings)
    registered = register_model(
        ml_client(workspace),
        local_model_path(args.model, settings),
        reference.name,
        args.model,
        progress=print,
    )
    return registered.version


def _workspace(args: argparse.Namespace, settings: Settings) -> AzureWorkspace:
    from deploystudio.deployment.azure.workspace import resolve_workspace

    form = {
        "subscription_id": args.subscription_id,
        "resource_group": args.resource_group,
        "workspace_name": args.workspace_name,
    }
    return resolve_workspace(
        form, config_roots=(Path.cwd(), settings.home), config_path=args.config
    )


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from deploystudio.deployment.azure.export import example_request_or_none, export_online
    from deploystudio.deployment.azure.specs import (
        OnlineDeploymentSpec,
        OnlineEndpointSpec,
        model_source,
        scoring_code,
    )
    from deploystudio.prediction import local_model_path

    if args.register and args.azure_version:
        raise AzureSpecError("Give --register or --azure-version, not both.")

    environment = {}
    for name in args.env or []:
        # Values come from this shell, as for local deployments: never typed on a command line
        # that shell history keeps.
        if name not in os.environ:
            raise AzureSpecError(f"Environment variable {name} is not set in this shell.")
        environment[name] = os.environ[name]
    spec = OnlineDeploymentSpec(
        name=args.deployment,
        endpoint_name=args.endpoint,
        model=model_source(
            args.model,
            settings,
            workspace_version=(
                _registered_version(args, settings) if args.register else args.azure_version
            ),
        ),
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        request_settings=(
            {"request_timeout_ms": args.request_timeout_ms} if args.request_timeout_ms else {}
        ),
        environment_variables=environment,
        code=scoring_code(args.bundle, settings) if args.bundle else None,
    )
    from deploystudio.deployment.azure.pinning import Pinning, pinned_environment
    from deploystudio.deployment.store import DeploymentStore

    pinning = Pinning(None, "Not pinned: the model is referenced in Azure.")
    if spec.model.local_path is not None:
        # What the local deployments of this model recorded they ran in.
        deployments = DeploymentStore.from_settings(settings).list_deployments()
        pinning = pinned_environment(args.model, deployments, settings.home)
    # request.json: the version's input example (read from the cached download, which a model
    # referenced in the workspace fetches here only for it).
    model_path = spec.model.local_path or local_model_path(args.model, settings)
    result = export_online(
        args.out,
        OnlineEndpointSpec(name=args.endpoint, auth_mode=args.auth_mode),
        spec,
        pinned=pinning.environment,
        request=example_request_or_none(model_path),
    )
    print(pinning.note)
    print(f"Wrote {len(result.files)} file(s) to {result.folder}:")
    for name in result.files:
        if not name.startswith("model/"):
            print(f"  {name}")
    if spec.model.azure_reference is not None:
        print(f"The deployment uses {spec.model.azure_reference}.")
    print("Deploy from that folder with:")
    for command in result.commands:
        print(f"  {command}")
    return 0


def cmd_test_connection(args: argparse.Namespace, settings: Settings) -> int:
    from deploystudio.deployment.azure.workspace import test_connection

    workspace = _workspace(args, settings)
    print(f"Workspace: {workspace.describe()}")
    report = test_connection(workspace)
    if args.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "message": report.message,
                    "credential": report.credential,
                    "tried": [{"name": a.name, "reason": a.reason} for a in report.tried],
                    "location": report.location,
                }
            )
        )
    else:
        print(report.message)
        for attempt in report.tried:
            print(f"  tried {attempt.name}: {attempt.reason}")
    return 0 if report.ok else EXIT_FAILED


def add_azure_commands(commands: argparse._SubParsersAction) -> None:
    """Add `azure export` and `azure test-connection` to the `deploystudio` parser."""
    from deploystudio.deployment.azure.specs import AUTH_MODES, DEFAULT_INSTANCE_TYPE

    azure = commands.add_parser("azure", help="Azure ML: export deployments, test the connection")
    actions = azure.add_subparsers(dest="azure_command", required=True)

    export = actions.add_parser(
        "export", help="write endpoint.yml, deployment.yml and a README for `az ml` (no Azure)"
    )
    export.add_argument("--model", required=True, help="models:/NAME/VERSION, @ALIAS or a folder")
    export.add_argument("--bundle", help="scoring bundle NAME:VERSION (else no-code MLflow)")
    export.add_argument("--endpoint", required=True)
    export.add_argument("--deployment", required=True)
    export.add_argument("--auth-mode", choices=AUTH_MODES, default="key")
    export.add_argument("--instance-type", default=DEFAULT_INSTANCE_TYPE)
    export.add_argument("--instance-count", type=int, default=1)
    export.add_argument("--request-timeout-ms", type=int)
    export.add_argument(
        "--env", action="append", metavar="NAME", help="pass this variable's value from here"
    )
    in_azure = export.add_mutually_exclusive_group()
    in_azure.add_argument(
        "--azure-version",
        metavar="VERSION",
        help="the model is registered in the workspace as this version (azureml:NAME:VERSION, "
        "the workspace's number, which may differ from ours): reference it instead of copying "
        "its files",
    )
    in_azure.add_argument(
        "--register",
        action="store_true",
        help="register the model in the workspace now (azure-ai-ml) and reference the version "
        "Azure gives it; the workspace as for test-connection",
    )
    export.add_argument("--out", required=True, help="a new or empty folder")
    _workspace_arguments(export)
    export.set_defaults(handler=cmd_export)

    test = actions.add_parser("test-connection", help="get a token and read the workspace")
    _workspace_arguments(test)
    test.add_argument("--json", action="store_true")
    test.set_defaults(handler=cmd_test_connection)


def _workspace_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subscription-id")
    parser.add_argument("--resource-group")
    parser.add_argument("--workspace-name")
    parser.add_argument("--config", help="an Azure ML config.json in the project or data folder")
