import os

from deploystudio.demo import DEMO_KEY_TAG, DEMO_MODELS, seed_demo


def test_seed_registers_every_demo_version_once(registry, seeded):
    expected = sum(len(d.versions) for d in DEMO_MODELS)
    assert len(seeded) == expected
    for demo in DEMO_MODELS:
        versions = registry.list_versions(demo.name)
        assert len(versions) == len(demo.versions)
        assert {v.tags[DEMO_KEY_TAG] for v in versions} == {
            f"{demo.name}:{n}" for n in range(1, len(demo.versions) + 1)
        }


def test_seeding_again_adds_nothing(settings, registry, seeded):
    assert seed_demo(settings, registry) == []
    assert len(registry.list_versions("iris-classifier")) == 2
    assert registry.get_model("iris-classifier").aliases == {"champion": "1", "challenger": "2"}


def test_demo_artifacts_live_in_the_data_folder(settings, seeded):
    assert (settings.home / "mlflow.db").is_file()
    assert any(settings.artifact_root.rglob("MLmodel"))


def test_seeding_leaves_the_process_registry_settings_as_they_were(
    settings, registry, seeded, monkeypatch
):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://users-own-server:5000")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    seed_demo(settings, registry)
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://users-own-server:5000"
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    assert mlflow.get_tracking_uri() == "http://users-own-server:5000"
