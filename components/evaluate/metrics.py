"""Scores of predicted probabilities against true labels.

Accuracy, macro F1, per-class precision and recall, the confusion matrix, ROC AUC
and PR AUC (average precision) of the positive class for two classes and
one-vs-rest means over the classes for more, log loss, and the expected
calibration error with its reliability diagram. Which of them the gate may read, and
which way each improves, is the task's (``components.core.tasks``: ``Task.metrics``,
``Task.better``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    pass


CALIBRATION_BINS = 10


@dataclass(frozen=True)
class Scores:
    accuracy: float
    macro_f1: float
    precision: dict[str, float]
    recall: dict[str, float]
    confusion: list[list[int]]
    roc_auc: float | None  # None: undefined (the test split holds one class only)
    pr_auc: float | None
    log_loss: float
    ece: float  # expected calibration error of the top class, CALIBRATION_BINS bins

    def summary(self) -> dict[str, float]:
        """The overall scores as metrics (``test_*``), the undefined ones left out."""
        values = {
            "test_accuracy": self.accuracy,
            "test_macro_f1": self.macro_f1,
            "test_roc_auc": self.roc_auc,
            "test_pr_auc": self.pr_auc,
            "test_log_loss": self.log_loss,
            "test_ece": self.ece,
        }
        return {name: value for name, value in values.items() if value is not None}

    def metric(self, name: str) -> float:
        values = self.summary()
        if name not in values:
            raise ValueError(f"{name} is undefined on this test split (it holds one class only)")
        return values[name]


def task_scores(task, y_true: np.ndarray, outputs: np.ndarray, classes: list):
    """A model's scores for its ``task`` (``components.core.tasks``): ``score`` of class
    probabilities, or a regression's RMSE, MAE, R² and MAPE of its values; either has
    ``summary()`` (the ``test_*`` metrics) and ``metric(name)``."""
    if task.outputs_values:
        from components.core.tasks.regression import regression_scores

        return regression_scores(y_true, outputs)
    return score(y_true, outputs, classes)


def quality(out: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of class probabilities, or minus the RMSE of values (one column): higher
    is better either way."""
    if out.shape[1] == 1:
        return -float(np.sqrt(np.mean((out[:, 0] - y) ** 2)))
    return float(np.mean(out.argmax(1) == y))


def metric_safe(name: str) -> str:
    """A class name as MLflow accepts it in a metric key."""
    return re.sub(r"[^\w.\- /]", "_", str(name))


def score(y_true: np.ndarray, proba: np.ndarray, classes: list) -> Scores:
    """Scores of class-index labels ``y_true`` against probabilities; ``classes`` names them."""
    from sklearn.metrics import (
        confusion_matrix,
        f1_score,
        log_loss,
        precision_recall_fscore_support,
    )

    proba = np.asarray(proba, dtype=np.float64)
    y_pred = proba.argmax(axis=1)
    index = list(range(len(classes)))
    precision, recall, _, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=index, zero_division=0
    )
    roc_auc, pr_auc = ranking_scores(y_true, proba)
    return Scores(
        accuracy=float((y_pred == y_true).mean()),
        macro_f1=float(f1_score(y_true, y_pred, labels=index, average="macro", zero_division=0)),
        precision={str(c): float(p) for c, p in zip(classes, precision, strict=True)},
        recall={str(c): float(r) for c, r in zip(classes, recall, strict=True)},
        confusion=confusion_matrix(y_true, y_pred, labels=index).tolist(),
        roc_auc=roc_auc,
        pr_auc=pr_auc,
        log_loss=float(log_loss(y_true, proba / proba.sum(1, keepdims=True), labels=index)),
        ece=calibration(y_true, proba)[0],
    )


def ranking_scores(y_true: np.ndarray, proba: np.ndarray) -> tuple[float | None, float | None]:
    """ROC AUC and PR AUC (average precision): of class 1 for two classes, else the mean
    of one-vs-rest scores over the classes the split holds (None: it holds one)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    columns = [1] if proba.shape[1] == 2 else range(proba.shape[1])
    present = [k for k in columns if 0 < (y_true == k).sum() < len(y_true)]
    if not present:
        return None, None
    roc = [roc_auc_score(y_true == k, proba[:, k]) for k in present]
    pr = [average_precision_score(y_true == k, proba[:, k]) for k in present]
    return float(np.mean(roc)), float(np.mean(pr))


def calibration(y_true: np.ndarray, proba: np.ndarray) -> tuple[float, list[tuple]]:
    """Expected calibration error of the top class, and the bins behind it:
    (mean confidence, accuracy, count) for each non-empty bin of confidence."""
    confidence = proba.max(axis=1)
    right = proba.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, CALIBRATION_BINS - 1)
    bins, ece = [], 0.0
    for b in range(CALIBRATION_BINS):
        members = which == b
        if members.any():
            conf, acc = float(confidence[members].mean()), float(right[members].mean())
            bins.append((conf, acc, int(members.sum())))
            ece += members.mean() * abs(conf - acc)
    return float(ece), bins


def plot_calibration(y_true: np.ndarray, proba: np.ndarray, path: Path) -> Path:
    """The reliability diagram: accuracy against confidence, bin by bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ece, bins = calibration(y_true, np.asarray(proba, dtype=np.float64))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    conf, acc, count = zip(*bins, strict=True)
    ax.plot(conf, acc, marker="o", label="model")
    for c, a, n in bins:
        ax.annotate(str(n), (c, a), textcoords="offset points", xytext=(0, 6), fontsize=7)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("confidence (top class)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"calibration (test split): ECE {ece:.4f}")
    ax.legend(loc="upper left")
    return saved(fig, path)


def classification_report(y_true: np.ndarray, proba: np.ndarray, classes: list) -> str:
    """scikit-learn's per-class precision, recall, F1 and support, as text."""
    from sklearn.metrics import classification_report as report

    index = list(range(len(classes)))
    names = [str(c) for c in classes]
    return report(y_true, proba.argmax(axis=1), labels=index, target_names=names, digits=4)


def plot_confusion(confusion: list[list[int]], classes: list, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), [str(c) for c in classes])
    ax.set_yticks(range(len(classes)), [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (test split)")
    for (i, j), n in np.ndenumerate(matrix):
        if n:
            color = "white" if n > matrix.max() / 2 else "black"
            ax.text(j, i, str(n), ha="center", va="center", fontsize=8, color=color)
    return saved(fig, path)


def saved(fig, path: Path) -> Path:
    """A finished figure written to ``path`` (its folder made) and closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- a regression's pictures


def as_values(y_true, predicted) -> tuple[np.ndarray, np.ndarray]:
    """True values and a model's one-column answers as two flat float64 arrays."""
    y = np.asarray(y_true, dtype=np.float64).ravel()
    return y, np.asarray(predicted, dtype=np.float64).reshape(len(y), -1)[:, 0]


def regression_report(y_true: np.ndarray, predicted: np.ndarray) -> str:
    """A regression's scores and its residuals' quantiles, as text."""
    from components.core.tasks.regression import regression_scores

    y, p = as_values(y_true, predicted)
    residual = p - y
    lines = [f"{k.removeprefix('test_'):8}{v:14.4f}" for k, v in
             regression_scores(y, predicted).summary().items()]  # fmt: skip
    q = np.quantile(residual, [0.05, 0.25, 0.5, 0.75, 0.95]) if len(y) else np.zeros(5)
    lines.append("residuals (predicted - actual): 5% {:.4f}, 25% {:.4f}, median {:.4f},"
                 " 75% {:.4f}, 95% {:.4f}".format(*q))  # fmt: skip
    return f"regression on the test split ({len(y)} rows)\n" + "\n".join(lines) + "\n"


def plot_predicted(y_true: np.ndarray, predicted: np.ndarray, path: Path) -> Path:
    """Predicted against actual, with the diagonal a perfect model lies on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y, p = as_values(y_true, predicted)
    fig, ax = plt.subplots(figsize=(5, 5))
    low, high = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    ax.plot([low, high], [low, high], color="grey", linestyle="--", label="predicted = actual")
    ax.scatter(y, p, s=8, alpha=0.6)
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    rmse = float(np.sqrt(np.mean((p - y) ** 2)))
    ax.set_title(f"predicted against actual (test split): RMSE {rmse:.4g}")
    ax.legend(loc="upper left")
    return saved(fig, path)


def plot_residuals(y_true: np.ndarray, predicted: np.ndarray, path: Path) -> Path:
    """Residuals (predicted - actual) against the prediction: a trend or a funnel shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y, p = as_values(y_true, predicted)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.axhline(0.0, color="grey", linestyle="--")
    ax.scatter(p, p - y, s=8, alpha=0.6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("residual (predicted - actual)")
    ax.set_title("residuals (test split)")
    return saved(fig, path)
