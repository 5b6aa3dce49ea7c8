"""The test-only hook that loads a fake Azure transport into an app server: obeyed only with the
explicit test flag, refused (not ignored) without it."""

from __future__ import annotations

import pytest

from deploystudio.deployment.azure.fake_transport_hook import (
    CONNECTION_VARIABLE,
    TEST_FLAG_VARIABLE,
    connection_factory,
)
from deploystudio.errors import AzureConnectionError

SPEC = "tests.e2e.azure_app_transport:connection"


def test_nothing_set_means_the_real_network() -> None:
    assert connection_factory({}) is None
    assert connection_factory({TEST_FLAG_VARIABLE: "1"}) is None


def test_refused_without_the_test_flag() -> None:
    for flag in ({}, {TEST_FLAG_VARIABLE: "0"}, {TEST_FLAG_VARIABLE: "yes"}):
        with pytest.raises(AzureConnectionError, match="tests only"):
            connection_factory({CONNECTION_VARIABLE: SPEC, **flag})


def test_loaded_with_the_test_flag() -> None:
    from tests.e2e.azure_app_transport import connection

    assert connection_factory({CONNECTION_VARIABLE: SPEC, TEST_FLAG_VARIABLE: "1"}) is connection


@pytest.mark.parametrize("spec", ["tests.nowhere:connection", "tests.azure_fake:nothing", "x"])
def test_a_name_that_is_no_function_is_said(spec: str) -> None:
    with pytest.raises(AzureConnectionError, match="names no function"):
        connection_factory({CONNECTION_VARIABLE: spec, TEST_FLAG_VARIABLE: "1"})
