"""Both targets implement the one DeploymentTarget interface (issue 15): every method the
interface declares, with its parameters, and the capabilities each says it has.

The Azure target runs over the real azure-ai-ml with only the HTTP transport faked
(tests/azure_fake.py); the local target over a real deployment store. Both are used below
through variables typed to the interface, as the pages use them.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from deploystudio.config import Settings
from deploystudio.deployment.azure.online import AzureTarget
from deploystudio.deployment.base import Capability, DeploymentState, DeploymentTarget
from deploystudio.deployment.local.target import LocalTarget
from deploystudio.deployment.store import DeploymentStore
from deploystudio.errors import (
    DeploymentNotFoundError,
    EndpointFrontError,
    TrafficError,
    UnsupportedError,
)
from tests.azure_fake import FakeAzureML, fake_target

TARGETS = (LocalTarget, AzureTarget)
MODEL = "azureml:iris-classifier:2"
# The methods behind each capability: a target that claims one implements them, a target that
# does not leaves the interface's, which raises UnsupportedError.
CAPABILITY_METHODS = {
    Capability.KEYS: ("get_keys", "regenerate_key"),
    Capability.LOGS: ("get_logs",),
    Capability.TRAFFIC: ("set_traffic",),
    Capability.MIRROR: ("set_traffic",),
    Capability.METRICS: ("get_metrics",),
    Capability.RESTART: ("restart_deployment",),
    Capability.HISTORY: ("history", "note"),
}


def interface_methods() -> list[str]:
    return sorted(
        name
        for name, member in vars(DeploymentTarget).items()
        if inspect.isfunction(member) and not name.startswith("_") and name != "supports"
    )


def test_the_interface_declares_what_the_endpoint_pages_use() -> None:
    """Keys, logs, traffic and mirror, invoke, metrics and restart are declared once, with
    progress on every long call, so that a page needs nothing but the interface."""
    assert {
        "create_endpoint",
        "update_endpoint",
        "delete_endpoint",
        "list_endpoints",
        "get_endpoint",
        "create_deployment",
        "update_deployment",
        "delete_deployment",
        "list_deployments",
        "get_deployment",
        "predict",
        "get_keys",
        "regenerate_key",
        "get_logs",
        "set_traffic",
        "get_metrics",
        "restart_deployment",
    } <= set(interface_methods())
    for name in (
        "create_endpoint",
        "update_endpoint",
        "delete_endpoint",
        "create_deployment",
        "update_deployment",
        "delete_deployment",
        "regenerate_key",
        "set_traffic",
        "restart_deployment",
    ):
        progress = inspect.signature(getattr(DeploymentTarget, name)).parameters["progress"]
        assert progress.kind is inspect.Parameter.KEYWORD_ONLY, name
        assert progress.default is None, name


@pytest.mark.parametrize("method", interface_methods())
@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.__name__)
def test_a_target_takes_the_interface_parameters(target: type, method: str) -> None:
    """The implementation takes every parameter of the interface's method, with the same kind,
    default and annotation and in the same order; anything more is keyword-only with a
    default, so a caller written to the interface works on either target."""
    declared = inspect.signature(getattr(DeploymentTarget, method)).parameters
    implemented = inspect.signature(getattr(target, method)).parameters
    shared = [name for name in implemented if name in declared]
    assert shared == list(declared), f"{target.__name__}.{method}: {list(implemented)}"
    for name, parameter in declared.items():
        mine = implemented[name]
        assert (mine.kind, mine.default, mine.annotation) == (
            parameter.kind,
            parameter.default,
            parameter.annotation,
        ), f"{target.__name__}.{method}({name})"
    for name, parameter in implemented.items():
        if name not in declared:
            assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, (target.__name__, name)
            assert parameter.default is not inspect.Parameter.empty, (target.__name__, name)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.__name__)
def test_a_target_implements_what_its_capabilities_claim(target: type) -> None:
    assert not inspect.isabstract(target)
    methods = {m for names in CAPABILITY_METHODS.values() for m in names}
    for method in sorted(methods):
        claimed = {c for c, names in CAPABILITY_METHODS.items() if method in names}
        own = getattr(target, method) is not getattr(DeploymentTarget, method)
        assert own == bool(claimed & target.capabilities), (target.__name__, method)


def test_the_targets_capabilities() -> None:
    assert LocalTarget.capabilities == frozenset(Capability)
    assert AzureTarget.capabilities == {
        Capability.KEYS,
        Capability.LOGS,
        Capability.TRAFFIC,
        Capability.MIRROR,
        Capability.HISTORY,
    }


# -- through the interface, on real instances --------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> DeploymentStore:
    return DeploymentStore(tmp_path / "deployments.db", actor="tester")


@pytest.fixture
def azure(settings: Settings, store: DeploymentStore) -> tuple[DeploymentTarget, FakeAzureML]:
    fake = FakeAzureML()
    return fake_target(fake, settings, store), fake


def test_azure_keys_logs_and_traffic_through_the_interface(
    azure: tuple[DeploymentTarget, FakeAzureML],
) -> None:
    target, fake = azure
    target.create_endpoint("iris-ep", {"auth_mode": "key"})
    for name in ("blue", "green"):
        record = target.create_deployment(name, MODEL, "iris-ep", {"instance_type": "F2"})
        assert record.state is DeploymentState.READY

    after = target.set_traffic("iris-ep", {"blue": 100, "green": 0}, ("green", 20))
    assert after.traffic == {"blue": 100, "green": 0}
    assert after.mirror == ("green", 20)
    sent = fake.of_route("endpoint", "PUT")[-1].body["properties"]
    assert sent["traffic"] == {"blue": 100}
    assert sent["mirrorTraffic"] == {"green": 20}
    puts = len(fake.of_route("endpoint", "PUT"))
    with pytest.raises(TrafficError):
        target.set_traffic("iris-ep", {"blue": 90})
    assert len(fake.of_route("endpoint", "PUT")) == puts  # refused before Azure saw it

    before = target.get_keys("iris-ep")
    messages: list[str] = []
    after_keys = target.regenerate_key("iris-ep", "secondary", progress=messages.append)
    assert after_keys.primary == before.primary
    assert after_keys.secondary != before.secondary
    assert messages
    assert isinstance(target.get_logs("blue", "iris-ep", lines=5), str)

    assert not target.supports(Capability.METRICS)
    with pytest.raises(UnsupportedError, match="metrics"):
        target.get_metrics("iris-ep")
    with pytest.raises(UnsupportedError, match="restart"):
        target.restart_deployment("blue", "iris-ep")


def test_local_logs_traffic_and_metrics_say_why_without_a_running_front(
    settings_for_home: Settings,
) -> None:
    """The local target's answers when nothing runs yet: a record without a front has no
    metrics (EndpointFrontError, said on the page), traffic to a deployment that does not
    exist is refused, and a missing deployment has no logs."""
    target: DeploymentTarget = LocalTarget(settings_for_home)
    assert isinstance(target, LocalTarget)
    target.store.create_endpoint("quiet")
    with pytest.raises(EndpointFrontError, match="no metrics"):
        target.get_metrics("quiet")
    with pytest.raises(TrafficError):
        target.set_traffic("quiet", {"absent": 100})
    with pytest.raises(DeploymentNotFoundError):
        target.get_logs("absent", "quiet")
    assert all(target.supports(c) for c in Capability)


@pytest.fixture
def settings_for_home(tmp_path: Path, settings: Settings) -> Settings:
    from tests.conftest import settings_for

    return settings_for(tmp_path / "home", MLFLOW_TRACKING_URI=settings.tracking_uri)
