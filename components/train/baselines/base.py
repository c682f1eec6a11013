"""What a baseline declares (``components.train.baselines``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Baseline:
    name: str  # what train.baseline names, and the run's name: baseline-<name>
    what: str  # how the logs describe it
    reads: tuple[str, ...]  # the data kinds it fits (prepared splits of them)
    # (seed, task, meta.json) -> an unfitted scikit-learn model of that task: a classifier
    # answering class probabilities, or a regressor answering values
    make: Callable[..., object]
    # Types and functions skops must trust to load it back (MLflow's sklearn flavour
    # stores it with skops, no pickle): fitted here, loaded only from this store.
    trusted: tuple[str, ...]
    described: Callable[[object], dict]  # its settings as MLflow params (<name>.*)
    measured: Callable[[object], dict]  # what fitting it found, as MLflow metrics
    # how its answers are explained: a method of components.evaluate.explain.attribution
    # (by name: training does not import the explainers)
    explainer: str | None = None
    tasks: tuple[str, ...] = ("classification",)  # the tasks it can learn


def regressor_for(model, meta: dict):
    """``model`` (a scikit-learn regressor) learning the target as the data declares it:
    through log1p where ``data.tabular.target_transform`` has it (answers inverted with
    expm1), else as it is (standardising changes nothing a tree or a ridge learns)."""
    from sklearn.compose import TransformedTargetRegressor

    if "log1p" not in (meta.get("target") or {}).get("transforms", []):
        return model
    import numpy as np

    return TransformedTargetRegressor(regressor=model, func=np.log1p, inverse_func=np.expm1,
                                      check_inverse=False)  # fmt: skip


# skops must trust these to load a baseline that learnt a log1p target
TARGET_TRUSTED = ("numpy.log1p", "numpy.expm1")


def fitted(model):
    """The fitted estimator inside a target transform (else ``model``)."""
    return getattr(model, "regressor_", model)
