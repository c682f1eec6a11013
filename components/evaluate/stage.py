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
from components.core.splits import load_meta, load_split

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
    baseline: BaselineScores | None = None

    def summary(self) -> str:
        def line(s: Scores) -> str:
            auc = f", ROC AUC {s.roc_auc:.4f}" if s.roc_auc is not None else ""
            return f"test accuracy {s.accuracy:.4f}, macro F1 {s.macro_f1:.4f}{auc}"

        text = line(self.scores)
        if self.baseline is not None:
            text += f"; baseline ({self.baseline.kind}): {line(self.baseline.scores)}"
        return text


def evaluate_stage(params: Params, ws: Workspace) -> EvaluationResult:
    """Score the trained weights on the test split; log to the training run."""
    from components.core import tracking
    from components.evaluate.explain.trained import explain_models
    from components.train.baseline import read_baseline
    from components.train.models import load_net
    from components.train.stage import read_train_record

    trained = read_train_record(ws)
    classes = load_meta(ws.prepared)["classes"]
    test = load_split(ws.prepared, "test")
    net, spec = load_net(trained.model_file)
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
    baseline = evaluate_baseline(ws, test, classes)
    explained = explain_models(params, ws, net, spec, load_meta(ws.prepared), read_baseline(ws))
    if baseline is not None:
        with report.open("a") as out:
            out.write("\n" + side_by_side({"network": scores, baseline.kind: baseline.scores}))
    with tracking.start_run(ws, params.data.name, run_id=trained.run_id) as run:
        run.log_metrics(metrics)
        run.log_artifact(png, "evaluation")
        run.log_artifact(reliability, "evaluation")
        run.log_artifact(report, "evaluation")
        run.log_artifact(ws.metrics, "evaluation")
    runs = {"network": trained.run_id, **({baseline.kind: baseline.run_id} if baseline else {})}
    log_explanations(ws, explained, runs)
    return EvaluationResult(
        run_id=trained.run_id, scores=scores, metrics_file=ws.metrics, confusion_png=png,
        baseline=baseline,
    )  # fmt: skip


def log_explanations(ws: Workspace, explained: dict, runs: dict[str, str]) -> None:
    """Each model's explanation (its part of ``explanations.json`` and its picture) into its
    own run, folder ``explanations/``, where the register stage reads it back."""
    import json

    from components.core import tracking
    from components.evaluate.explain.trained import ARTIFACT_FOLDER, model_file

    for name, run_id in runs.items():
        found = explained["models"].get(name)
        if found is None:
            continue
        run = tracking.Run(run_id, experiment_id="")
        own = model_file(ws, name, "json")
        own.write_text(json.dumps({"kind": explained["kind"], **found}, indent=2))
        run.log_artifact(own, ARTIFACT_FOLDER)
        if found.get("picture"):
            run.log_artifact(model_file(ws, name, "png"), ARTIFACT_FOLDER)


@dataclass(frozen=True)
class BaselineScores:
    kind: str
    run_id: str
    scores: Scores


def evaluate_baseline(ws: Workspace, test, classes: list) -> BaselineScores | None:
    """Score the baseline trained beside the network on the same test split; log to its run."""
    from components.core import tracking
    from components.core.predict import load_registered
    from components.train.baseline import read_baseline

    baseline = read_baseline(ws)
    path = baseline_metrics_file(ws)
    if baseline is None:
        write_json(path, {})  # the stage's output exists either way (DVC)
        return None
    scores = score(test.y, load_registered(baseline.model_uri)(test.x), classes)
    metrics = scores.summary()
    write_json(path, metrics)
    tracking.Run(baseline.run_id, experiment_id="").log_metrics(metrics)  # the ended run
    return BaselineScores(baseline.kind, baseline.run_id, scores)


def baseline_metrics_file(ws: Workspace) -> Path:
    return ws.report("baseline_metrics.json")


def side_by_side(models: dict[str, Scores]) -> str:
    """The overall test scores of several models, a column each."""
    rows = {name for s in models.values() for name in s.summary()}
    order = [m for m in ("test_accuracy", "test_macro_f1", "test_roc_auc", "test_pr_auc",
                         "test_log_loss", "test_ece") if m in rows]  # fmt: skip
    lines = ["side by side on the test split", f"{'':16}" + "".join(f"{n:>12}" for n in models)]
    for metric in order:
        cells = "".join(
            f"{s.summary()[metric]:>12.4f}" if metric in s.summary() else f"{'-':>12}"
            for s in models.values()
        )
        lines.append(f"{metric.removeprefix('test_'):16}{cells}")
    return "\n".join(lines) + "\n"
