"""The ``evaluate`` stage: score a model on the frozen test split.

``predict_proba`` and ``score`` are shared by every stage that judges a model
(the promotion gate, compression, monitoring), so they all measure the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.data import load_meta, load_split
from components.paths import Workspace
from components.records import write_json

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    from components.config import Params

Predictor = Callable[[np.ndarray], np.ndarray]  # images -> class probabilities


@dataclass(frozen=True)
class Scores:
    accuracy: float
    macro_f1: float
    precision: dict[str, float]
    recall: dict[str, float]
    confusion: list[list[int]]

    def metric(self, name: str) -> float:
        return {"test_accuracy": self.accuracy, "test_macro_f1": self.macro_f1}[name]


@dataclass(frozen=True)
class EvaluationResult:
    run_id: str
    scores: Scores
    metrics_file: Path
    confusion_png: Path

    def summary(self) -> str:
        s = self.scores
        return f"test accuracy {s.accuracy:.4f}, macro F1 {s.macro_f1:.4f}"


def metric_safe(name: str) -> str:
    """A class name as MLflow accepts it in a metric key."""
    return re.sub(r"[^\w.\- /]", "_", str(name))


def torch_predictor(module) -> Predictor:
    """Wrap a torch module that returns logits or probabilities."""
    import torch

    def predict(x: np.ndarray) -> np.ndarray:
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(x), 512):
                batch = torch.from_numpy(np.ascontiguousarray(x[start : start + 512]))
                out = module(batch).float()
                if not torch.allclose(out.sum(dim=1), torch.ones(len(out)), atol=1e-3):
                    out = torch.softmax(out, dim=1)
                outputs.append(out.numpy())
        return np.concatenate(outputs)

    return predict


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


def evaluate_stage(params: Params, ws: Workspace) -> EvaluationResult:
    """Score the trained weights on the test split; log to the training run."""
    from components import tracking
    from components.models import load_net
    from components.training import read_train_record

    trained = read_train_record(ws)
    classes = load_meta(ws.prepared)["classes"]
    test = load_split(ws.prepared, "test")
    net, _ = load_net(trained.model_file)
    proba = torch_predictor(net)(test.x)
    scores = score(test.y, proba, classes)

    png = plot_confusion(scores.confusion, classes, ws.report("confusion_matrix.png"))
    metrics = {
        "test_accuracy": scores.accuracy,
        "test_macro_f1": scores.macro_f1,
        **{f"test_precision_{metric_safe(c)}": v for c, v in scores.precision.items()},
        **{f"test_recall_{metric_safe(c)}": v for c, v in scores.recall.items()},
    }
    write_json(ws.metrics, metrics)
    report = ws.report("classification_report.txt")
    report.write_text(classification_report(test.y, proba, classes))
    with tracking.start_run(ws, params.data.name, run_id=trained.run_id) as run:
        run.log_metrics(metrics)
        run.log_artifact(png, "evaluation")
        run.log_artifact(report, "evaluation")
        run.log_artifact(ws.metrics, "evaluation")
    return EvaluationResult(
        run_id=trained.run_id, scores=scores, metrics_file=ws.metrics, confusion_png=png
    )
