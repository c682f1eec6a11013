"""Scores of predicted probabilities against true labels.

Accuracy, macro F1, per-class precision and recall, the confusion matrix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    pass


@dataclass(frozen=True)
class Scores:
    accuracy: float
    macro_f1: float
    precision: dict[str, float]
    recall: dict[str, float]
    confusion: list[list[int]]

    def metric(self, name: str) -> float:
        return {"test_accuracy": self.accuracy, "test_macro_f1": self.macro_f1}[name]


def metric_safe(name: str) -> str:
    """A class name as MLflow accepts it in a metric key."""
    return re.sub(r"[^\w.\- /]", "_", str(name))


def score(y_true: np.ndarray, proba: np.ndarray, classes: list) -> Scores:
    """Scores of class-index labels ``y_true`` against probabilities; ``classes`` names them."""
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    y_pred = proba.argmax(axis=1)
    index = list(range(len(classes)))
    precision, recall, _, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=index, zero_division=0
    )
    return Scores(
        accuracy=float((y_pred == y_true).mean()),
        macro_f1=float(f1_score(y_true, y_pred, labels=index, average="macro", zero_division=0)),
        precision={str(c): float(p) for c, p in zip(classes, precision, strict=True)},
        recall={str(c): float(r) for c, r in zip(classes, recall, strict=True)},
        confusion=confusion_matrix(y_true, y_pred, labels=index).tolist(),
    )


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
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
