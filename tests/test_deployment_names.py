"""Endpoint and deployment names follow Azure's rule, checked against azure-ai-ml's own check."""

from __future__ import annotations

import pytest

from deploystudio.deployment.names import NAME_RULE, validate_name
from deploystudio.errors import DeployStudioError, InvalidNameError

VALID = ["abc", "my-endpoint-1", "Blue", "a1b", "iris-v2-canary", "a" * 32, "a-b-c", "X99"]
INVALID = [
    "ab",  # too short
    "a" * 33,  # too long
    "1abc",  # starts with a digit
    "-abc",  # starts with a dash
    "abc-",  # ends with a dash
    "a--b",  # double dash
    "my_endpoint",
    "my.endpoint",
    "my endpoint",
    "abc\n",
    "ábc",  # letters are ASCII only
    "",
]


@pytest.mark.parametrize("name", VALID)
def test_valid_names_are_returned_unchanged(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", INVALID)
def test_invalid_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(InvalidNameError) as refused:
        validate_name(name, "deployment")
    message = str(refused.value)
    assert "3-32 characters" in message and "start with a letter" in message
    assert "deployment names are" in message
    assert isinstance(refused.value, DeployStudioError)


def test_non_text_is_refused() -> None:
    with pytest.raises(InvalidNameError, match="must be text"):
        validate_name(123)  # type: ignore[arg-type]


def test_rule_text_names_single_dashes() -> None:
    assert "single dashes" in NAME_RULE


def test_every_accepted_name_is_accepted_by_azure_ai_ml() -> None:
    # The SDK's check is looser (it allows "a--b"), never stricter: a name accepted here is
    # accepted by Azure's client too.
    from azure.ai.ml.entities._endpoint._endpoint_helpers import (
        validate_endpoint_or_deployment_name,
    )
    from azure.ai.ml.exceptions import ValidationException

    for name in VALID:
        validate_endpoint_or_deployment_name(name)
        validate_endpoint_or_deployment_name(name, is_deployment=True)
    for name in ["ab", "a" * 33, "1abc", "-abc", "abc-", "my_endpoint", "my.endpoint"]:
        with pytest.raises(ValidationException):
            validate_endpoint_or_deployment_name(name)
