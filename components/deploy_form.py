"""The Deploy page's form: what to deploy (model version, scoring bundle, runtime, instances)
and where (a new or an existing endpoint, the deployment's name, traffic once ready).

The model and version come from the page address (?model=&version= or &alias=) and are written
back to it; endpoints and deployments are read from the store on every run. Widget keys carry
what their default depends on (the model, the endpoint), so a default follows the choice it
comes from instead of keeping the value typed for another one.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import streamlit as st

from components import services
from components.bundle_choice import marked, unvalidated_labels, warn_if_unvalidated
from components.model_address import address_or_remembered, remember_model
from deploystudio.customization.bundles import SCORING_BUNDLE_TAG, Bundle, BundleStore
from deploystudio.customization.wrap_registration import WRAPPED_FROM_TAG, WRAPPER_KIND_TAG
from deploystudio.deployment.adaptive_batching import MAX_BATCH_SIZE, MAX_WAIT_MS
from deploystudio.deployment.base import (
    LOCAL_AUTH_MODES,
    AuthMode,
    Deployment,
    Endpoint,
    Runtime,
)

# The instance bound the request checks, so that the form offers no count it would refuse.
from deploystudio.deployment.deploy_request import (
    MAX_INSTANCES,
    DeployRequest,
    free_deployment_name,
    suggest_endpoint_name,
)
from deploystudio.deployment.names import NAME_RULE
from deploystudio.errors import DeployStudioError, InvalidModelUriError
from deploystudio.model_uri import parse_model_uri, registered_version_uri
from deploystudio.registry import VersionSummary

# Models offered in the select; a model named in the address is added when it is not among them.
MODEL_LIST_SIZE = 500
NEW, EXISTING = "new", "existing"
RUNTIME_HELP = {
    Runtime.AZUREML: "Azure ML's inference server, as Azure's no-code MLflow deployment: "
    "`input_data` in, a JSON list out; what works here works on Azure.",
    Runtime.MLFLOW: "MLflow's scoring server (`mlflow models serve`): MLflow's "
    "`dataframe_split` / `inputs` formats; takes no scoring bundle.",
}
AUTH_HELP = {
    AuthMode.KEY: "Callers send `Authorization: Bearer <key>` (Azure's default).",
    AuthMode.NONE: "No key: any program on this machine can call it.",
}


@dataclass(frozen=True)
class ModelChoice:
    name: str
    version: VersionSummary

    @property
    def uri(self) -> str:
        return registered_version_uri(self.name, self.version.version)


MODEL_KEY = "deploy_model"
VERSION_KEY = "deploy_version__"
_CHOICE_PAGE = "deploy_model_page"


def _preset(key: str, value: object) -> None:
    """Start a widget at `value` unless the user already set it (a keyed widget keeps its
    state; its `index`/`value` argument only counts on its first run)."""
    if key not in st.session_state and value is not None:
        st.session_state[key] = value


def _version_label(version: VersionSummary, unvalidated: Collection[str] = ()) -> str:
    parts = [f"version {version.version}"]
    if version.aliases:
        parts.append("@" + ", @".join(version.aliases))
    if WRAPPED_FROM_TAG in version.tags:
        parts.append("wrapper")
    if SCORING_BUNDLE_TAG in version.tags:
        parts.append(f"bundle {marked(version.tags[SCORING_BUNDLE_TAG], unvalidated)}")
    return " · ".join(parts)


def render_model_choice(page: str) -> ModelChoice:
    """Model and version selects, preset from the address; stops the page until both are set.
    `page` names the calling page: Deploy, Batch and Azure share these widget keys."""
    registry_uri = services.get_settings().registry_uri
    if st.session_state.get(_CHOICE_PAGE) != page:
        # A keyed widget on another page is another widget: the state the last page's left
        # under the same key would keep this page's select from being preset (it shows empty).
        for key in [k for k in st.session_state if k == MODEL_KEY or k.startswith(VERSION_KEY)]:
            del st.session_state[key]
        st.session_state[_CHOICE_PAGE] = page
    # Opened from the sidebar, the page starts from the model chosen last on another page.
    address_or_remembered()
    params = st.query_params
    wanted = params.get("model")
    try:
        page = services.model_page(registry_uri, "", None, "", MODEL_LIST_SIZE, None)
    except DeployStudioError as exc:
        st.error(str(exc))
        st.stop()
    names = sorted(m.name for m in page.models)
    if wanted and wanted not in names:
        names.insert(0, wanted)
    if not names:
        st.info("The registry has no models yet. Run `deploystudio seed-demo` to add demos.")
        st.stop()
    model_column, version_column = st.columns(2)
    _preset(MODEL_KEY, wanted)
    name = model_column.selectbox(
        "Model", names, index=None, placeholder="Choose a registered model", key=MODEL_KEY
    )
    if not name:
        st.info("Choose a model, or open one from Browse models, Inspect or Predict.")
        st.stop()
    try:
        versions = services.model_versions(registry_uri, name)
    except DeployStudioError as exc:
        st.error(str(exc))
        st.stop()
    if not versions:
        st.warning(f"Model {name!r} has no versions to deploy.")
        st.stop()
    by_number = {v.version: v for v in versions}
    version_key = f"{VERSION_KEY}{name}"
    if name == wanted:
        _preset(version_key, _wanted_version(params, versions))
    unvalidated = unvalidated_labels(bundles_for(_bundle_store(), name))
    number = version_column.selectbox(
        "Version",
        list(by_number),
        format_func=lambda n: _version_label(by_number[n], unvalidated),
        key=version_key,
    )
    version = by_number[number]
    if params.get("model") != name or params.get("version") != number or "alias" in params:
        # The address names the version on screen, so the page can be shared as it is.
        params.pop("alias", None)
        params["model"], params["version"] = name, number
    remember_model({"model": name, "version": number})
    _describe_version(version)
    return ModelChoice(name, version)


def _wanted_version(params, versions: list[VersionSummary]) -> str | None:
    numbers = {v.version for v in versions}
    if params.get("version") in numbers:
        return params["version"]
    alias = params.get("alias")
    found = [v.version for v in versions if alias and alias in v.aliases]
    return found[0] if found else None


def _describe_version(version: VersionSummary) -> None:
    notes = []
    source = version.tags.get(WRAPPED_FROM_TAG)
    if source:
        kind = version.tags.get(WRAPPER_KIND_TAG)
        notes.append(
            f"This version is a wrapper of `{source}`"
            + (f" ({kind})" if kind else "")
            + ", built on the Customize page."
        )
    if version.description:
        notes.append(version.description)
    if notes:
        st.caption(" ".join(notes))
    if version.status != "READY":
        st.warning(
            f"Version {version.version} is {version.status} in the registry: its files may be "
            "missing. Deploy a READY version."
        )


def _bundle_store() -> BundleStore:
    return BundleStore(services.get_settings().home / "bundles")


def bundles_for(store: BundleStore, model_name: str) -> list[Bundle]:
    """Saved bundles written for any version of `model_name` (a score.py written for one
    version usually serves the next), newest first within a name."""
    found = []
    for bundle in store.list_bundles():
        try:
            reference = parse_model_uri(bundle.model_uri)
        except InvalidModelUriError:
            continue
        if reference.is_registered and reference.name == model_name:
            found.append(bundle)
    return found


@dataclass(frozen=True)
class WhatToDeploy:
    bundle: str | None
    runtime: Runtime
    instance_count: int
    max_batch_size: int = 1
    max_wait_ms: int = 0


def render_what(choice: ModelChoice) -> WhatToDeploy:
    """Scoring bundle (preset to the version's attached one when it passed validation),
    runtime and instance count."""
    bundles = bundles_for(_bundle_store(), choice.name)
    labels = [b.label for b in bundles]
    unvalidated = unvalidated_labels(bundles)
    attached = choice.version.tags.get(SCORING_BUNDLE_TAG)
    if attached and attached not in labels:
        st.warning(
            f"This version's attached scoring bundle {attached} is not saved here any more: "
            "it deploys without it unless you choose another."
        )
    elif attached in unvalidated:
        st.warning(
            f"This version's attached scoring bundle {attached} did not pass validation, so it "
            "is not chosen for you: it deploys without it unless you choose it below.",
            icon=":material/warning:",
        )
    bundle_key = f"deploy_bundle__{choice.name}__{choice.version.version}"
    _preset(bundle_key, attached if attached in labels and attached not in unvalidated else None)
    bundle_column, runtime_column, count_column = st.columns([2, 3, 1])
    bundle = bundle_column.selectbox(
        "Scoring bundle",
        labels,
        index=None,
        format_func=lambda label: marked(label, unvalidated),
        placeholder="None: no-code deployment" if labels else "No bundle saved for this model",
        disabled=not labels,
        help="A score.py and environment saved on the Customize page. "
        + (f"Version {choice.version.version} has {attached} attached." if attached else ""),
        key=bundle_key,
    )
    with bundle_column:
        warn_if_unvalidated(bundle, unvalidated)
    if bundle:
        runtime = Runtime.AZUREML
        runtime_column.markdown("**Runtime**: azureml")
        runtime_column.caption(
            "A scoring bundle's score.py runs in Azure ML's inference server, as on Azure."
        )
    else:
        runtime = runtime_column.radio(
            "Runtime",
            list(Runtime),
            format_func=lambda r: r.value,
            captions=[RUNTIME_HELP[r] for r in Runtime],
            key="deploy_runtime",
        )
    instances = count_column.number_input(
        "Instance count",
        min_value=1,
        max_value=MAX_INSTANCES,
        value=1,
        step=1,
        help="Server workers for this deployment (each loads the model).",
        key="deploy_instances",
    )
    size, wait = render_batching()
    return WhatToDeploy(bundle, Runtime(runtime), int(instances), size, wait)


def render_batching() -> tuple[int, int]:
    """Adaptive batching of the new deployment: max batch size (1: off) and max wait."""
    size_column, wait_column, note_column = st.columns([1, 1, 4])
    size = size_column.number_input(
        "Max batch size",
        min_value=1,
        max_value=MAX_BATCH_SIZE,
        value=1,
        step=1,
        help="Adaptive batching: the endpoint gathers up to this many concurrent requests with "
        "the same columns and params into one model call (1: off). Only for models that answer "
        "one prediction per row: Inspect's deployability report says whether this one does.",
        key="deploy_max_batch_size",
    )
    wait = wait_column.number_input(
        "Max wait (ms)",
        min_value=0,
        max_value=MAX_WAIT_MS,
        value=0,
        step=5,
        help="How long a request may wait for others while the server is free (0: it goes at "
        "once; requests still gather while the server is busy).",
        key="deploy_max_wait_ms",
        disabled=size <= 1,
    )
    note_column.caption(
        "Batching is a setting of local endpoints: Azure ML has none, so an Azure export "
        "leaves it out."
    )
    return int(size), int(wait)


@dataclass(frozen=True)
class Destination:
    endpoint: str
    new_endpoint: bool
    auth_mode: AuthMode
    deployment: str
    all_traffic: bool


def render_where(
    model_name: str, endpoints: list[Endpoint], deployments: list[Deployment]
) -> Destination:
    """New endpoint (name checked as typed, auth mode) or an existing one; deployment name;
    whether it takes all traffic once ready."""
    names = [e.name for e in endpoints]
    by_name = {e.name: e for e in endpoints}
    wanted = st.query_params.get("endpoint")
    _preset("deploy_where", EXISTING if wanted in by_name else None)
    where = st.radio(
        "Endpoint",
        [NEW, EXISTING],
        format_func={NEW: "New endpoint", EXISTING: "Existing endpoint"}.__getitem__,
        horizontal=True,
        disabled=not endpoints,
        key="deploy_where",
    )
    if not endpoints:
        where = NEW
    left, right = st.columns(2)
    if where == NEW:
        endpoint = left.text_input(
            "Endpoint name",
            value=suggest_endpoint_name(model_name, names),
            help=f"Endpoint {NAME_RULE}.",
            live=True,
            key=f"deploy_new_endpoint__{model_name}",
        ).strip()
        auth = right.radio(
            "Authentication",
            list(LOCAL_AUTH_MODES),
            format_func=lambda a: a.value,
            captions=[AUTH_HELP[a] for a in LOCAL_AUTH_MODES],
            horizontal=True,
            key="deploy_auth",
        )
        target_key, default_name, taken = NEW, "blue", []
    else:
        _preset("deploy_existing_endpoint", wanted if wanted in by_name else None)
        endpoint = left.selectbox(
            "Endpoint",
            names,
            format_func=lambda n: _endpoint_label(by_name[n]),
            key="deploy_existing_endpoint",
        )
        auth = by_name[endpoint].auth_mode
        taken = [d.name for d in deployments if d.endpoint_name == endpoint]
        right.caption(f"Deployments of {endpoint}: " + (", ".join(taken) if taken else "none yet"))
        target_key, default_name = endpoint.lower(), free_deployment_name(taken)
    deployment = left.text_input(
        "Deployment name",
        value=default_name,
        help=f"Deployment {NAME_RULE}.",
        live=True,
        key=f"deploy_deployment_name__{target_key}",
    ).strip()
    all_traffic = st.checkbox(
        "Send all traffic to it once it is ready",
        value=where == NEW,
        key=f"deploy_all_traffic__{target_key}",
    )
    if where == EXISTING and not all_traffic:
        st.caption(
            "It starts with 0% of live traffic: test it directly, then shift traffic step by "
            "step with the safe rollout on the Endpoints page."
        )
    return Destination(endpoint, where == NEW, AuthMode(auth), deployment, all_traffic)


def show_existing_endpoint(endpoint: str) -> None:
    """Move the form to `endpoint` (call before `render_where`): after a deploy created it, the
    next deployment goes there, and the name is no longer free for a new one."""
    st.session_state["deploy_where"] = EXISTING
    st.session_state["deploy_existing_endpoint"] = endpoint


def _endpoint_label(endpoint: Endpoint) -> str:
    traffic = ", ".join(f"{n} {w}%" for n, w in endpoint.traffic.items() if w) or "no traffic"
    return f"{endpoint.name} · {endpoint.state.value} · {traffic}"


def build_request(choice: ModelChoice, what: WhatToDeploy, where: Destination) -> DeployRequest:
    return DeployRequest(
        model_uri=choice.uri,
        endpoint=where.endpoint,
        deployment=where.deployment,
        new_endpoint=where.new_endpoint,
        auth_mode=where.auth_mode,
        runtime=what.runtime,
        bundle=what.bundle,
        instance_count=what.instance_count,
        max_batch_size=what.max_batch_size,
        max_wait_ms=what.max_wait_ms,
        all_traffic=where.all_traffic,
    )
