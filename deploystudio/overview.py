"""The overview page's facts: the registry at a glance, endpoint health, batch jobs, and the
next step worth taking. Pure reads over the registry, a deployment target and job records."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from deploystudio.deployment.base import Deployment, DeploymentState, DeploymentTarget, Endpoint
from deploystudio.deployment.batch.records import BatchJob, JobState
from deploystudio.errors import DeployStudioError
from deploystudio.model_registry import ModelRegistry
from deploystudio.model_uri import ModelUriKind, parse_model_uri
from deploystudio.registry import ModelSummary

# The overview reads at most this many models (one MLflow search page each 1,000): enough for a
# team's registry, bounded for a 100,000-model one, where the counts say "at least".
OVERVIEW_PAGE_SIZE = 1000
OVERVIEW_MAX_PAGES = 5
CHAMPION = "champion"


@dataclass(frozen=True)
class RegistryFacts:
    models: list[ModelSummary]
    # False when the registry holds more models than the overview read.
    complete: bool

    @property
    def versions(self) -> int:
        # The latest version number of each model: versions registered, deleted ones included
        # (counting them exactly takes a search over every version, seconds on a big registry).
        return sum(int(m.latest_version or 0) for m in self.models)

    @property
    def aliases(self) -> int:
        return sum(len(m.aliases) for m in self.models)

    def alias_counts(self) -> Counter[str]:
        return Counter(alias for m in self.models for alias in m.aliases)


def registry_facts(registry: ModelRegistry) -> RegistryFacts:
    models: list[ModelSummary] = []
    token = None
    for _ in range(OVERVIEW_MAX_PAGES):
        page = registry.list_models(page_size=OVERVIEW_PAGE_SIZE, page_token=token)
        models.extend(page.models)
        token = page.next_page_token
        if token is None:
            break
    return RegistryFacts(models=models, complete=token is None)


def tag_suggestions(models: Iterable[ModelSummary]) -> dict[str, list[str]]:
    """Every tag key the models carry, with its values, most used first: what a tag filter
    can offer instead of asking for an exact `key=value`."""
    counts: dict[str, Counter[str]] = {}
    for model in models:
        for key, value in model.tags.items():
            counts.setdefault(key, Counter())[value] += 1
    return {
        key: [value for value, _ in values.most_common()] for key, values in sorted(counts.items())
    }


@dataclass(frozen=True)
class ServedVersion:
    """A registered version (or alias) a deployment serves."""

    model: str
    version: str | None
    alias: str | None
    endpoint: str
    deployment: str

    def serves(self, model: str, version: str, aliases: Iterable[str]) -> bool:
        """Whether this deployment serves `model` version `version`, by its number or by one
        of its `aliases` (as they stand now)."""
        return self.model == model and (self.version == version or self.alias in set(aliases))


def served_version(deployment: Deployment) -> ServedVersion | None:
    """What registered model a deployment serves, or None for a run or a local folder."""
    try:
        reference = parse_model_uri(deployment.model_uri)
    except DeployStudioError:
        return None
    registered = (ModelUriKind.REGISTERED_VERSION, ModelUriKind.REGISTERED_ALIAS)
    if reference.kind not in registered or reference.name is None:
        return None
    return ServedVersion(
        reference.name,
        reference.version,
        reference.alias,
        deployment.endpoint_name,
        deployment.name,
    )


@dataclass(frozen=True)
class EndpointHealth:
    endpoint: Endpoint
    deployments: list[Deployment]
    # Requests per second over the front's life, when its counters could be read.
    request_rate: float | None = None
    requests: int | None = None

    @property
    def ready(self) -> int:
        return sum(d.state is DeploymentState.READY for d in self.deployments)

    @property
    def healthy(self) -> bool:
        return (
            self.endpoint.state is DeploymentState.READY
            and bool(self.deployments)
            and self.ready == len(self.deployments)
        )

    @property
    def health(self) -> str:
        if self.endpoint.state is not DeploymentState.READY:
            return f"front {self.endpoint.state.value}"
        if not self.deployments:
            return "no deployments"
        if self.healthy:
            return "healthy"
        return f"{self.ready} of {len(self.deployments)} deployments ready"


def endpoint_health(
    target: DeploymentTarget, counters: dict[str, tuple[int, float]] | None = None
) -> list[EndpointHealth]:
    """Every endpoint with its deployments; `counters` maps an endpoint to (requests since its
    front started, seconds since then) where they were read."""
    counters = counters or {}
    by_endpoint: dict[str, list[Deployment]] = {}
    for deployment in target.list_deployments():
        by_endpoint.setdefault(deployment.endpoint_name, []).append(deployment)
    health = []
    for endpoint in target.list_endpoints():
        requests, seconds = counters.get(endpoint.name, (None, None))
        rate = requests / seconds if requests is not None and seconds else None
        health.append(EndpointHealth(endpoint, by_endpoint.get(endpoint.name, []), rate, requests))
    return health


@dataclass(frozen=True)
class NextStep:
    """Something worth doing, and the page (and address) where it is done."""

    text: str
    page: str
    query: dict[str, str] = field(default_factory=dict)


def next_steps(
    facts: RegistryFacts, endpoints: Sequence[EndpointHealth], jobs: Sequence[BatchJob]
) -> list[NextStep]:
    steps: list[NextStep] = []
    served = [
        s
        for e in endpoints
        for d in e.deployments
        if d.state is DeploymentState.READY and (s := served_version(d)) is not None
    ]
    for model in facts.models:
        version = model.aliases.get(CHAMPION)
        if version is None:
            continue
        if not any(
            s.model == model.name and (s.version == version or s.alias == CHAMPION) for s in served
        ):
            steps.append(
                NextStep(
                    f"Deploy {model.name} version {version} (champion): no endpoint serves it.",
                    "deploy",
                    {"model": model.name, "version": version},
                )
            )
    for health in endpoints:
        name = health.endpoint.name
        failed = [d.name for d in health.deployments if d.state is DeploymentState.FAILED]
        if failed:
            steps.append(
                NextStep(
                    f"Endpoint {name}: deployment {', '.join(failed)} failed; read its log "
                    "and restart it.",
                    "endpoints",
                    {"endpoint": name, "tab": "Deployments"},
                )
            )
        elif not health.deployments:
            steps.append(NextStep(f"Endpoint {name} has no deployment: add one.", "deploy", {}))
        elif not any(health.endpoint.traffic.values()):
            steps.append(
                NextStep(
                    f"Endpoint {name} sends no live traffic: set its traffic.",
                    "endpoints",
                    {"endpoint": name, "tab": "Traffic"},
                )
            )
    for job in jobs:
        if job.state is JobState.FAILED:
            steps.append(
                NextStep(
                    f"Batch job {job.id} failed: {job.reason or 'see its log'}.",
                    "batch",
                    {"job": job.id},
                )
            )
    if not facts.models:
        steps.append(NextStep("The registry is empty: run `deploystudio seed-demo`.", "browse"))
    return steps


def _loose(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _closeness(wanted: str, candidate: str) -> float:
    wanted, candidate = _loose(wanted), _loose(candidate)
    if not wanted:
        return 0.0
    if wanted in candidate or candidate in wanted:
        return 1.0
    return SequenceMatcher(None, wanted, candidate).ratio()


def suggest_tags(
    tag: tuple[str, str] | None, suggestions: dict[str, list[str]], limit: int = 8
) -> list[tuple[str, str]]:
    """Existing (key, value) tags close to a filter that found nothing, closest first.

    `framework=sklearn` suggests every value of `framework` (scikit-learn first); an unknown
    key suggests the keys that look like it, and values that look like the typed value.
    """
    if tag is None:
        return []
    key, value = tag
    pairs = [(k, v) for k, values in suggestions.items() for v in values]
    if key in suggestions:
        ranked = sorted(suggestions[key], key=lambda v: -_closeness(value, v))
        return [(key, v) for v in ranked][:limit]
    # Key and value each count: "frameworks=scikit" ranks framework=scikit-learn first.
    scored = [(_closeness(key, k) + _closeness(value or key, v), k, v) for k, v in pairs]
    ranked = sorted(scored, key=lambda s: -s[0])
    return [(k, v) for score, k, v in ranked if score >= 0.5][:limit]


def suggest_aliases(alias: str, facts: RegistryFacts, limit: int = 8) -> list[str]:
    """Aliases in the registry, those like `alias` first (for an alias filter that found
    nothing)."""
    known = facts.alias_counts()
    return sorted(known, key=lambda a: (-_closeness(alias, a), -known[a]))[:limit]
