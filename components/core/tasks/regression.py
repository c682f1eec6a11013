"""Regression: the label is a number, learnt with MSE or Huber on the declared target scale
(``objectives.Regress``), scored by RMSE, MAE, R² and (where every true value is positive)
MAPE, and answered as a value.

A model of this task answers one column: the value, in the label's own units (a network
inverts the declared target transforms in its last layer; a baseline through
scikit-learn's ``TransformedTargetRegressor``). ``core.predict`` takes a one-column output
as values, never as probabilities.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from components.core.messages import short
from components.core.numbers import finite_number
from components.core.tasks.base import Task

# data.tabular.task: auto picks regression for a numeric label with more distinct values
MANY_VALUES = 20


@dataclass(frozen=True)
class RegressionScores:
    rmse: float
    mae: float
    r2: float
    mape: float | None  # None: a true value is 0 or below (a share of it means nothing)
    rows: int

    def summary(self) -> dict[str, float]:
        values = {"test_rmse": self.rmse, "test_mae": self.mae, "test_r2": self.r2,
                  "test_mape": self.mape}  # fmt: skip
        return {name: value for name, value in values.items() if value is not None}

    def metric(self, name: str) -> float:
        values = self.summary()
        if name not in values:
            raise ValueError(f"{name} is undefined here: MAPE needs every true value positive;"
                             " gate on test_rmse, test_mae or test_r2")  # fmt: skip
        return values[name]


def regression_scores(y_true, predicted) -> RegressionScores:
    """RMSE, MAE, R² and MAPE of values ``predicted`` (N, or N x 1) against ``y_true``."""
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(predicted, dtype=np.float64).reshape(len(y), -1)[:, 0]
    error = p - y
    spread = float(((y - y.mean()) ** 2).sum()) if len(y) else 0.0
    r2 = 1.0 - float((error**2).sum()) / spread if spread > 0 else 0.0
    mape = float(np.mean(np.abs(error) / y)) if len(y) and (y > 0).all() else None
    return RegressionScores(rmse=float(np.sqrt(np.mean(error**2))), mae=float(np.mean(
        np.abs(error))), r2=r2, mape=mape, rows=len(y))  # fmt: skip


class Regression(Task):
    name = "regression"
    objective = "regress"
    metrics = ("test_rmse", "test_mae", "test_r2", "test_mape")
    lower_is_better = frozenset({"test_rmse", "test_mae", "test_mape"})
    default_metric = "test_rmse"
    outputs_values = True

    def targets(self, labels: np.ndarray) -> tuple[np.ndarray, list]:
        """The labels as float64 values (no classes); a label that is no finite number
        stops with the rows it is in."""
        text = np.asarray(labels).astype(str)
        values = np.full(len(text), np.nan)
        for i, v in enumerate(text.tolist()):
            with contextlib.suppress(ValueError):
                values[i] = float(v)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise ValueError(
                f"a regression label must be a finite number: {len(bad)} are not"
                f" (rows {short(bad.tolist())}: {short(text[bad].tolist())})"
            )
        return values, []

    def outputs(self, classes: list) -> int:
        return 1

    def check_feedback(self, labels: list, classes: list, label_range: list | None = None) -> list:
        """Finite numbers (``true`` is no number) within ``label_range`` (the data gate's:
        a label it would hold in quarantine is refused here, before it is logged)."""
        wrong = [v for v in labels if not finite_number(v)]
        if wrong:
            raise ValueError(f"labels {short(wrong)} are not finite numbers: this model"
                             " predicts a value")  # fmt: skip
        values = [float(v) for v in labels]
        if label_range is not None:
            low, high = label_range
            outside = [v for v in values if not low <= v <= high]
            if outside:
                raise ValueError(f"labels {short(outside)} lie outside the label's known range"
                                 f" [{low:g}, {high:g}] (the training labels' range widened by"
                                 " validate.range_margin, or validate.ranges): the data gate"
                                 " would refuse them")  # fmt: skip
        return values

    def answers(self, outputs: np.ndarray, classes: list) -> tuple[list, np.ndarray]:
        """Each input's value, and no confidence (the log keeps 0)."""
        values = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)[:, 0]
        return values.tolist(), np.zeros(len(values))


def numeric_label(column) -> tuple[bool, str]:
    """Whether ``data.tabular.task: auto`` reads a label column (pandas) as a number to
    predict, and why, in words for the prepare summary."""
    import pandas as pd

    types = pd.api.types
    if types.is_bool_dtype(column) or not types.is_numeric_dtype(column):
        return False, f"label {column.name!r} is not numeric: classification"
    distinct = int(column.nunique(dropna=True))
    if distinct > MANY_VALUES:
        return True, (
            f"label {column.name!r} is numeric with {distinct} distinct values:"
            " regression (data.tabular.task: auto; set classification to classify)"
        )
    return False, (f"label {column.name!r} is numeric with {distinct} distinct values (at most"
                   f" {MANY_VALUES}): classification (data.tabular.task: auto; set regression"
                   " to predict the number)")  # fmt: skip


REGRESSION = Regression()
