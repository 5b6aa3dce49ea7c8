"""Seed a registry with demo models trained on data that ships with scikit-learn.

Each demo version carries a `deploystudio.demo_key` tag set when it is registered, so seeding
again (or after an interrupted seed) adds only what is missing and never duplicates.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn import datasets
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from deploystudio import demo_models
from deploystudio.config import Settings
from deploystudio.mlflow_scope import using_registry
from deploystudio.registry import Registry

DEMO_EXPERIMENT = "deploystudio-demo"
DEMO_KEY_TAG = "deploystudio.demo_key"
SEED = 7


@dataclass(frozen=True)
class LoggedDemo:
    """What one demo version's training produced and how to log it."""

    log: Callable[[], mlflow.models.model.ModelInfo]
    params: dict[str, Any]
    metrics: dict[str, float]


@dataclass(frozen=True)
class DemoModel:
    name: str
    description: str
    tags: dict[str, str]
    versions: list[Callable[[], LoggedDemo]]
    aliases: dict[str, int] = field(default_factory=dict)


def _pinned(*packages: str) -> list[str]:
    return [f"{p}=={importlib.metadata.version(p)}" for p in packages]


def _frame(bunch) -> tuple[pd.DataFrame, pd.Series]:
    frame = bunch.frame.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    target = frame.pop("target")
    return frame, target


def _iris_version(c: float) -> Callable[[], LoggedDemo]:
    def train() -> LoggedDemo:
        x, y = _frame(datasets.load_iris(as_frame=True))
        names = datasets.load_iris().target_names
        labels = pd.Series(names[y], name="species")
        x_train, x_test, y_train, y_test = train_test_split(x, labels, random_state=SEED)
        model = LogisticRegression(C=c, max_iter=1000).fit(x_train, y_train)
        example = x_test.head(5)
        return LoggedDemo(
            log=lambda: mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(example, model.predict(example)),
                input_example=example,
                pip_requirements=_pinned("scikit-learn", "numpy", "pandas"),
            ),
            params={"C": c, "max_iter": 1000},
            metrics={"accuracy": float(model.score(x_test, y_test))},
        )

    return train


def _diabetes_pipeline() -> LoggedDemo:
    x, y = _frame(datasets.load_diabetes(as_frame=True, scaled=False))
    x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=SEED)
    pipeline = Pipeline([("scaler", StandardScaler()), ("model", Ridge(alpha=1.0))])
    pipeline.fit(x_train, y_train)
    example = x_test.head(5)
    return LoggedDemo(
        log=lambda: mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=infer_signature(example, pipeline.predict(example)),
            input_example=example,
            pip_requirements=_pinned("scikit-learn", "numpy", "pandas"),
        ),
        params={"scaler": "StandardScaler", "alpha": 1.0},
        metrics={"r2": float(pipeline.score(x_test, y_test))},
    )


def _wine_without_signature() -> LoggedDemo:
    x, y = _frame(datasets.load_wine(as_frame=True))
    x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=SEED)
    model = LogisticRegression(max_iter=5000).fit(x_train, y_train)
    return LoggedDemo(
        # Deliberately no signature, no input example and unpinned requirements: this is the
        # model the deployability report should warn about.
        log=lambda: mlflow.sklearn.log_model(
            model, name="model", pip_requirements=["scikit-learn", "numpy"]
        ),
        params={"max_iter": 5000},
        metrics={"accuracy": float(model.score(x_test, y_test))},
    )


def _cancer_risk_with_params() -> LoggedDemo:
    x, y = _frame(datasets.load_breast_cancer(as_frame=True))
    features = ["mean_radius", "mean_texture", "mean_smoothness", "worst_area", "worst_concavity"]
    x = x[features]
    # In this data set target 1 is benign; the model scores the risk of malignancy.
    malignant = (y == 0).astype(int)
    x_train, x_test, y_train, y_test = train_test_split(x, malignant, random_state=SEED)
    classifier = Pipeline([("scaler", StandardScaler()), ("model", LogisticRegression())])
    classifier.fit(x_train, y_train)
    python_model = demo_models.ThresholdedRiskModel(classifier, "malignant", "benign")
    example = x_test.head(5)
    params = {"threshold": 0.5}
    output = python_model.predict(None, example, params)

    def log() -> mlflow.models.model.ModelInfo:
        cloudpickle.register_pickle_by_value(demo_models)
        try:
            return mlflow.pyfunc.log_model(
                name="model",
                python_model=python_model,
                signature=infer_signature(example, output, params=params),
                input_example=(example, params),
                pip_requirements=_pinned("scikit-learn", "numpy", "pandas", "cloudpickle"),
            )
        finally:
            cloudpickle.unregister_pickle_by_value(demo_models)

    return LoggedDemo(
        log=log,
        params={"features": ",".join(features), "default_threshold": 0.5},
        metrics={"accuracy": float(classifier.score(x_test, y_test))},
    )


def _digits_tensor() -> LoggedDemo:
    digits = datasets.load_digits()
    images = digits.images.astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(images, digits.target, random_state=SEED)
    classifier = LogisticRegression(max_iter=2000).fit(x_train.reshape(len(x_train), -1), y_train)
    python_model = demo_models.DigitImageModel(classifier)
    example = x_test[:3]

    def log() -> mlflow.models.model.ModelInfo:
        cloudpickle.register_pickle_by_value(demo_models)
        try:
            return mlflow.pyfunc.log_model(
                name="model",
                python_model=python_model,
                signature=infer_signature(example, python_model.predict(None, example)),
                input_example=example,
                pip_requirements=_pinned("scikit-learn", "numpy", "cloudpickle"),
            )
        finally:
            cloudpickle.unregister_pickle_by_value(demo_models)

    accuracy = float(classifier.score(x_test.reshape(len(x_test), -1), y_test))
    return LoggedDemo(log=log, params={"max_iter": 2000}, metrics={"accuracy": accuracy})


DEMO_MODELS: list[DemoModel] = [
    DemoModel(
        name="iris-classifier",
        description="Iris species from four flower measurements (logistic regression).",
        tags={
            "task": "classification",
            "dataset": "iris",
            "framework": "scikit-learn",
            "team": "demo",
        },
        versions=[_iris_version(0.05), _iris_version(1.0)],
        aliases={"champion": 1, "challenger": 2},
    ),
    DemoModel(
        name="diabetes-regressor",
        description="Disease progression after one year: StandardScaler + Ridge pipeline.",
        tags={
            "task": "regression",
            "dataset": "diabetes",
            "framework": "scikit-learn",
            "team": "demo",
        },
        versions=[_diabetes_pipeline],
        aliases={"champion": 1},
    ),
    DemoModel(
        name="wine-no-signature",
        description="Wine cultivar classifier logged without a signature or input example.",
        tags={
            "task": "classification",
            "dataset": "wine",
            "framework": "scikit-learn",
            "team": "demo",
        },
        versions=[_wine_without_signature],
    ),
    DemoModel(
        name="cancer-risk-scorer",
        description="Custom pyfunc: malignancy probability and a label; takes a `threshold` param.",
        tags={
            "task": "classification",
            "dataset": "breast_cancer",
            "framework": "pyfunc",
            "team": "demo",
        },
        versions=[_cancer_risk_with_params],
    ),
    DemoModel(
        name="digits-tensor",
        description="Handwritten digit from an 8x8 image, as a (-1, 8, 8) float32 tensor.",
        tags={
            "task": "classification",
            "dataset": "digits",
            "framework": "pyfunc",
            "input": "tensor",
            "team": "demo",
        },
        versions=[_digits_tensor],
    ),
]


def _demo_experiment_id(settings: Settings) -> str:
    client = mlflow.MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name(DEMO_EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    # In the embedded store, artifacts go under the data folder rather than ./mlruns.
    location = settings.artifact_root.as_uri() if settings.is_embedded_registry else None
    return client.create_experiment(DEMO_EXPERIMENT, artifact_location=location)


def seed_demo(
    settings: Settings,
    registry: Registry,
    progress: Callable[[str], None] = lambda message: None,
) -> list[str]:
    """Register every demo version that is missing; return the versions added as name/version."""
    settings.home.mkdir(parents=True, exist_ok=True)
    with using_registry(settings.tracking_uri, settings.registry_uri):
        experiment_id = _demo_experiment_id(settings)
        return [
            added
            for demo in DEMO_MODELS
            for added in _seed_model(demo, registry.client, experiment_id, progress)
        ]


def _seed_model(
    demo: DemoModel,
    client: mlflow.MlflowClient,
    experiment_id: str,
    progress: Callable[[str], None],
) -> list[str]:
    if not _registered_model_exists(client, demo.name):
        client.create_registered_model(demo.name, tags=demo.tags, description=demo.description)
    existing_keys = {
        v.tags.get(DEMO_KEY_TAG) for v in client.search_model_versions(f"name='{demo.name}'")
    }
    added: list[str] = []
    versions_by_number: dict[int, str] = {}
    for number, train in enumerate(demo.versions, start=1):
        key = f"{demo.name}:{number}"
        if key in existing_keys:
            continue
        progress(f"Training and registering {demo.name} (demo version {number})")
        trained = train()
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"{demo.name}-v{number}"):
            mlflow.log_params(trained.params)
            mlflow.log_metrics(trained.metrics)
            info = trained.log()
        version = mlflow.register_model(info.model_uri, demo.name, tags={DEMO_KEY_TAG: key})
        versions_by_number[number] = str(version.version)
        added.append(f"{demo.name}/{version.version}")
    _set_aliases(client, demo, versions_by_number)
    return added


def _registered_model_exists(client: mlflow.MlflowClient, name: str) -> bool:
    return bool(client.search_registered_models(filter_string=f"name='{name}'", max_results=1))


def _set_aliases(client: mlflow.MlflowClient, demo: DemoModel, added: dict[int, str]) -> None:
    """Point aliases at the demo versions; only when those versions were added in this run."""
    for alias, number in demo.aliases.items():
        if number in added:
            client.set_registered_model_alias(demo.name, alias, added[number])
