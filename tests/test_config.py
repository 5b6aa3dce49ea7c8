from pathlib import Path

from deploystudio.config import load_settings, redact_uri

NO_SECRETS = Path("/nonexistent/secrets.toml")


def test_defaults_to_embedded_sqlite_store_in_the_data_folder(tmp_path: Path):
    settings = load_settings({"DEPLOYSTUDIO_HOME": str(tmp_path)}, NO_SECRETS)
    assert settings.home == tmp_path.resolve()
    assert settings.tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert settings.registry_uri == settings.tracking_uri
    assert settings.artifact_root == tmp_path.resolve() / "artifacts"
    assert settings.is_embedded_registry


def test_home_defaults_to_dot_studio_in_the_working_directory(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings({}, NO_SECRETS).home == tmp_path.resolve() / ".studio"


def test_tracking_uri_from_environment_wins_over_secrets(tmp_path: Path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[deploystudio]\ntracking_uri = "http://from-secrets:5000"\n')
    from_secrets = load_settings({"DEPLOYSTUDIO_HOME": str(tmp_path)}, secrets)
    assert from_secrets.tracking_uri == "http://from-secrets:5000"
    assert not from_secrets.is_embedded_registry
    from_env = load_settings(
        {"DEPLOYSTUDIO_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": "http://env:5000"}, secrets
    )
    assert from_env.tracking_uri == "http://env:5000"


def test_model_roots_are_split_on_pathsep(tmp_path: Path):
    settings = load_settings(
        {
            "DEPLOYSTUDIO_HOME": str(tmp_path),
            "DEPLOYSTUDIO_MODEL_ROOTS": f"{tmp_path}/a:{tmp_path}/b",
        },
        NO_SECRETS,
    )
    assert settings.local_model_roots == (tmp_path / "a", tmp_path / "b")


def test_redact_uri_hides_credentials_only():
    assert (
        redact_uri("https://user:s3cret@mlflow.example:443/x") == "https://***@mlflow.example:443/x"
    )
    assert redact_uri("http://localhost:5000") == "http://localhost:5000"
    assert redact_uri("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"
