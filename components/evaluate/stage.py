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


from components.core.tasks import task_of
from components.evaluate.metrics import (
    classification_report,
    metric_safe,
    plot_calibration,
    plot_confusion,
    plot_predicted,
    plot_residuals,
    regression_report,
    task_scores,
)


@dataclass(frozen=True)
class EvaluationResult:
    run_id: str
    scores: object  # the task's scores (metrics.Scores, tasks.regression.RegressionScores)
    metrics_file: Path
    confusion_png: Path  # a regression's: predicted against actual
    baselines: tuple[BaselineScores, ...] = ()

    def summary(self) -> str:
        text = line(self.scores)
        for b in self.baselines:
            text += f"; baseline ({b.kind}): {line(b.scores)}"
        return text


def line(scores) -> str:
    """A model's headline test scores, in words."""
    values = scores.summary()
    if "test_rmse" in values:
        return (f"test RMSE {values['test_rmse']:.4f}, MAE {values['test_mae']:.4f},"
                f" R² {values['test_r2']:.4f}")  # fmt: skip
    auc = f", ROC AUC {values['test_roc_auc']:.4f}" if "test_roc_auc" in values else ""
    return (f"test accuracy {values['test_accuracy']:.4f}, macro F1"
            f" {values['test_macro_f1']:.4f}{auc}")  # fmt: skip


def evaluate_stage(params: Params, ws: Workspace) -> EvaluationResult:
    """Score the trained weights on the test split; log to the training run."""
    from components.core import tracking
    from components.evaluate.explain.trained import explain_models
    from components.train.baseline import read_baselines
    from components.train.models import load_net
    from components.train.stage import read_train_record

    trained = read_train_record(ws)
    meta = load_meta(ws.prepared)
    classes, task = meta["classes"], task_of(meta)
    test = load_split(ws.prepared, "test")
    net, spec = load_net(trained.model_file)
    out = torch_predictor(net)(test.x)
    scores = task_scores(task, test.y, out, classes)
    report = ws.report("classification_report.txt")
    if task.outputs_values:
        png = plot_predicted(test.y, out, ws.report("predicted_vs_actual.png"))
        pictures = [png, plot_residuals(test.y, out, ws.report("residuals.png"))]
        metrics = scores.summary()
        report.write_text(regression_report(test.y, out))
    else:
        png = plot_confusion(scores.confusion, classes, ws.report("confusion_matrix.png"))
        pictures = [png, plot_calibration(test.y, out, ws.report("calibration.png"))]
        metrics = {
            **scores.summary(),
            **{f"test_precision_{metric_safe(c)}": v for c, v in scores.precision.items()},
            **{f"test_recall_{metric_safe(c)}": v for c, v in scores.recall.items()},
        }
        report.write_text(classification_report(test.y, out, classes))
    write_json(ws.metrics, metrics)
    fitted = read_baselines(ws)
    baselines = evaluate_baselines(ws, test, meta, fitted)
    explained = explain_models(params, ws, net, spec, meta, fitted)
    if baselines:
        with report.open("a") as out_file:
            both = {"network": scores, **{b.kind: b.scores for b in baselines}}
            out_file.write("\n" + side_by_side(both))
    with tracking.start_run(ws, params.data.name, run_id=trained.run_id) as run:
        run.log_metrics(metrics)
        for picture in pictures:
            run.log_artifact(picture, "evaluation")
        run.log_artifact(report, "evaluation")
        run.log_artifact(ws.metrics, "evaluation")
    runs = {"network": trained.run_id, **{b.kind: b.run_id for b in baselines}}
    log_explanations(ws, explained, runs)
    return EvaluationResult(
        run_id=trained.run_id, scores=scores, metrics_file=ws.metrics, confusion_png=png,
        baselines=tuple(baselines),
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
    scores: object


def evaluate_baselines(ws: Workspace, test, meta: dict, fitted: list) -> list[BaselineScores]:
    """Score each baseline trained beside the network on the same test split; log to its
    run; ``baseline_metrics.json`` holds each one's metrics by name."""
    from components.core import tracking
    from components.core.predict import load_registered

    task, out = task_of(meta), []
    for baseline in fitted:
        answers = load_registered(baseline.model_uri)(test.x)
        scores = task_scores(task, test.y, answers, meta["classes"])
        tracking.Run(baseline.run_id, experiment_id="").log_metrics(scores.summary())
        out.append(BaselineScores(baseline.kind, baseline.run_id, scores))
    write_json(baseline_metrics_file(ws), {b.kind: b.scores.summary() for b in out})
    return out


def baseline_metrics_file(ws: Workspace) -> Path:
    return ws.report("baseline_metrics.json")


def side_by_side(models: dict) -> str:
    """The overall test scores of several models, a column each."""
    rows = {name for s in models.values() for name in s.summary()}
    order = [m for m in ("test_accuracy", "test_macro_f1", "test_roc_auc", "test_pr_auc",
                         "test_log_loss", "test_ece", "test_rmse", "test_mae", "test_r2",
                         "test_mape") if m in rows]  # fmt: skip
    lines = ["side by side on the test split", f"{'':16}" + "".join(f"{n:>12}" for n in models)]
    for metric in order:
        cells = "".join(
            f"{s.summary()[metric]:>12.4f}" if metric in s.summary() else f"{'-':>12}"
            for s in models.values()
        )
        lines.append(f"{metric.removeprefix('test_'):16}{cells}")
    return "\n".join(lines) + "\n"
