from pathlib import Path

import pytest

from deploystudio.errors import InvalidModelUriError
from deploystudio.model_uri import ModelUriKind, parse_model_uri


@pytest.mark.parametrize(
    ("text", "kind", "name", "version", "alias"),
    [
        ("models:/iris/3", ModelUriKind.REGISTERED_VERSION, "iris", "3", None),
        ("models:/iris@champion", ModelUriKind.REGISTERED_ALIAS, "iris", None, "champion"),
        (" models:/iris/12/ ", ModelUriKind.REGISTERED_VERSION, "iris", "12", None),
        ("models:/m-0123abc", ModelUriKind.LOGGED_MODEL, None, None, None),
    ],
)
def test_registry_forms(text, kind, name, version, alias):
    reference = parse_model_uri(text)
    assert (reference.kind, reference.name, reference.version, reference.alias) == (
        kind,
        name,
        version,
        alias,
    )


def test_run_uri_keeps_run_and_path():
    reference = parse_model_uri("runs:/abc123/model")
    assert reference.kind is ModelUriKind.RUN_ARTIFACT
    assert reference.run_id == "abc123"
    assert reference.uri == "runs:/abc123/model"


def test_local_folder_and_file_uri_resolve_to_the_same_path(tmp_path: Path):
    assert parse_model_uri(str(tmp_path)).local_path == tmp_path.resolve()
    assert parse_model_uri(tmp_path.as_uri()).local_path == tmp_path.resolve()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "models:/iris",
        "models:/iris/latest",
        "models:/iris/1/extra",
        "s3://bucket/m",
        "runs:/",
        "runs:/abc",
        "models:/@x",
    ],
)
def test_bad_uris_name_the_accepted_forms(text):
    with pytest.raises(InvalidModelUriError) as error:
        parse_model_uri(text)
    message = str(error.value)
    assert "models:/NAME" in message or "runs:/RUN_ID/PATH" in message
