"""The demo's two models, trained on datasets that ship inside scikit-learn (no downloads).

- ``breast-cancer``: tabular, 30 FP64 features (Wisconsin diagnostic breast cancer), standard scaling + logistic
  regression, served by MLServer.
- ``digits``: tensor-shaped, 8x8 grey-level images (UCI optical recognition of handwritten digits), logistic
  regression on the 64 pixels, served by KServe's ModelServer.

Each dataset is split into a real sub-population the model is trained on and one it never sees, so that the demo's
"drifted" traffic period is real data from elsewhere, not synthetic noise: breast-cancer by ``mean texture``
(training: at most the 75th percentile), digits by total ink per image (training: at most the 75th percentile).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


@dataclass(frozen=True)
class DemoModel:
    """A trained model and its data.

    Attributes:
        name: model name in URLs and records.
        path: joblib file of the fitted estimator.
        train_x: training features, ``(n, 30)`` FP64 or ``(n, 8, 8)`` FP32.
        holdout_x: unseen rows of the training sub-population (the in-distribution traffic).
        shifted_x: rows of the other sub-population (the drifted traffic).
        feature_names: one name per feature (flattened for images).
    """

    name: str
    path: Path
    train_x: np.ndarray[Any, np.dtype[Any]]
    holdout_x: np.ndarray[Any, np.dtype[Any]]
    shifted_x: np.ndarray[Any, np.dtype[Any]]
    feature_names: list[str]


def _save(model: Any, directory: Path, mlserver_version: str | None = None) -> Path:
    """Write ``model.joblib`` (and, for MLServer, ``model-settings.json`` naming ``mlserver_version``)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.joblib"
    joblib.dump(model, path)
    if mlserver_version is not None:
        settings = {
            "name": "breast-cancer",
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "version": mlserver_version},
        }
        (directory / "model-settings.json").write_text(json.dumps(settings, indent=2))
    return path


def _breast_cancer_split(seed: int) -> tuple[DemoModel, np.ndarray[Any, np.dtype[Any]]]:
    """The breast-cancer data split by ``mean texture`` (model fields unset), and the training labels."""
    data = load_breast_cancer()
    x, y = data.data.astype(np.float64), data.target
    texture = x[:, list(data.feature_names).index("mean texture")]
    inside = texture <= np.quantile(texture, 0.75)
    x_tr, x_ho, y_tr, _ = train_test_split(x[inside], y[inside], test_size=0.3, random_state=seed)
    split = DemoModel("breast-cancer", Path(), x_tr, x_ho, x[~inside], [str(n) for n in data.feature_names])
    return split, y_tr


def train_breast_cancer(directory: Path, seed: int = 0) -> DemoModel:
    """Train the tabular model; write ``model.joblib`` and MLServer's ``model-settings.json`` into ``directory``."""
    split, y_tr = _breast_cancer_split(seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(split.train_x, y_tr)
    return replace(split, path=_save(model, directory, "v1"))


def train_breast_cancer_canary(directory: Path, seed: int = 0) -> DemoModel:
    """The canary of ``breast-cancer`` (version ``v2``) with a realistic defect: it was retrained on standardised
    features, but the exported artifact lost its ``StandardScaler`` step, so raw features reach a classifier that
    expects them scaled. Same training rows as the stable model."""
    split, y_tr = _breast_cancer_split(seed)
    retrained = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5)).fit(split.train_x, y_tr)
    model = retrained[-1]  # the export kept the classifier and lost the preprocessing step
    return replace(split, path=_save(model, directory, "v2"))


def train_digits(directory: Path, seed: int = 0) -> DemoModel:
    """Train the image model on 8x8 digits; write ``model.joblib`` into ``directory``."""
    data = load_digits()
    images = data.images.astype(np.float32)
    ink = images.reshape(len(images), -1).sum(axis=1)
    inside = ink <= np.quantile(ink, 0.75)
    x_tr, x_ho, y_tr, _ = train_test_split(images[inside], data.target[inside], test_size=0.3, random_state=seed)
    model = LogisticRegression(max_iter=3000).fit(x_tr.reshape(len(x_tr), -1), y_tr)
    path = _save(model, directory)
    return DemoModel(
        "digits", path, x_tr, x_ho, images[~inside], [f"pixel_{r}_{c}" for r in range(8) for c in range(8)]
    )
