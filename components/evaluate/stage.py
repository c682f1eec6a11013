"""The ``evaluate`` stage: score the trained model on the frozen test split.

``metrics.score`` and ``core.predict`` are shared by every stage that judges a
model (the promotion gate, compression, monitoring), so they all measure alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from components.core.paths import Workspace
from components.core.predict import torch_predictor
from components.core.records import write_json
from components.prepare.splits import load_meta, load_split

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    from components.core.config import Params


from components.evaluate.metrics import (
    Scores,
    classification_report,
    metric_safe,
    plot_calibration,
    plot_confusion,
    score,
)


@dataclass(frozen=True)
class EvaluationResult:
    run_id: str
    scores: Scores
    metrics_file: Path
    confusion_png: Path

    def summary(self) -> str:
        s = self.scores
        auc = f", ROC AUC {s.roc_auc:.4f}" if s.roc_auc is not None else ""
        return f"test accuracy {s.accuracy:.4f}, macro F1 {s.macro_f1:.4f}{auc}"


def evaluate_stage(params: Params, ws: Workspace) -> EvaluationResult:
    """Score the trained weights on the test split; log to the training run."""
    from components.core import tracking
    from components.train.models import load_net
    from components.train.stage import read_train_record

    trained = read_train_record(ws)
    classes = load_meta(ws.prepared)["classes"]
    test = load_split(ws.prepared, "test")
    net, _ = load_net(trained.model_file)
    proba = torch_predictor(net)(test.x)
    scores = score(test.y, proba, classes)

    png = plot_confusion(scores.confusion, classes, ws.report("confusion_matrix.png"))
    reliability = plot_calibration(test.y, proba, ws.report("calibration.png"))
    metrics = {
        **scores.summary(),
        **{f"test_precision_{metric_safe(c)}": v for c, v in scores.precision.items()},
        **{f"test_recall_{metric_safe(c)}": v for c, v in scores.recall.items()},
    }
    write_json(ws.metrics, metrics)
    report = ws.report("classification_report.txt")
    report.write_text(classification_report(test.y, proba, classes))
    with tracking.start_run(ws, params.data.name, run_id=trained.run_id) as run:
        run.log_metrics(metrics)
        run.log_artifact(png, "evaluation")
        run.log_artifact(reliability, "evaluation")
        run.log_artifact(report, "evaluation")
        run.log_artifact(ws.metrics, "evaluation")
    return EvaluationResult(
        run_id=trained.run_id, scores=scores, metrics_file=ws.metrics, confusion_png=png
    )
