"""What a baseline declares (``components.train.baselines``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Baseline:
    name: str  # what train.baseline names, and the run's name: baseline-<name>
    what: str  # how the logs describe it
    reads: tuple[str, ...]  # the data kinds it fits (prepared splits of them)
    make: Callable[[int], object]  # seed -> an unfitted scikit-learn classifier
    # Types and functions skops must trust to load it back (MLflow's sklearn flavour
    # stores it with skops, no pickle): fitted here, loaded only from this store.
    trusted: tuple[str, ...]
    described: Callable[[object], dict]  # its settings as MLflow params (<name>.*)
    measured: Callable[[object], dict]  # what fitting it found, as MLflow metrics
    # how its answers are explained: a method of components.evaluate.explain.attribution
    # (by name: training does not import the explainers)
    explainer: str | None = None
