"""The ``monitor`` stage: Evidently data and prediction drift against the reference data.

Images are compared through per-sample statistics (mean, std, min, max, ink:
the share of lit pixels) plus the champion's predicted class, so the same
report works for any image size. ``check_drift`` is the gate: drift when the
share of drifted columns reaches ``monitor.drift_threshold``.

Until production traffic is logged, the stage simulates it from the test
split: a clean batch, a noisy one and an intensity-shifted one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.config import MonitorConfig, Params
from components.data import load_meta, load_split, pixel_scale
from components.paths import Workspace
from components.records import write_json

FEATURES = ["mean", "std", "min", "max", "ink"]
PREDICTION = "prediction"
BATCHES = ("clean", "noise", "shift")


@dataclass(frozen=True)
class DriftResult:
    batch: str
    drifted: bool
    drift_share: float
    drifted_columns: list[str]
    column_scores: dict[str, float]
    report: Path


@dataclass(frozen=True)
class MonitorResult:
    results: list[DriftResult]
    summary_file: Path

    def verdict(self, batch: str) -> bool:
        return next(r.drifted for r in self.results if r.batch == batch)

    def summary(self) -> str:
        verdicts = ", ".join(
            f"{r.batch} {'DRIFT' if r.drifted else 'no drift'}" for r in self.results
        )
        return f"{verdicts}; reports in {self.summary_file.parent}"


def feature_table(
    x: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray] | None = None,
    columns: list[str] | None = None,
):
    """Images: per-sample statistics. Tables (``columns`` given): those feature columns."""
    import pandas as pd

    if columns is not None:
        table = pd.DataFrame(x[:, : len(columns)].astype(np.float64), columns=columns)
    else:
        flat = x.reshape(len(x), -1).astype(np.float64)
        table = pd.DataFrame(
            {
                "mean": flat.mean(axis=1),
                "std": flat.std(axis=1),
                "min": flat.min(axis=1),
                "max": flat.max(axis=1),
                "ink": (flat > 0).mean(axis=1),
            }
        )
    if predict is not None:
        table[PREDICTION] = predict(x.astype(np.float32)).argmax(axis=1).astype(str)
    return table


def simulate_batch(
    x: np.ndarray,
    kind: str,
    cfg: MonitorConfig,
    pixel_max: float | None,
    seed: int,
    numeric: int | None = None,
) -> np.ndarray:
    """A production-like batch drawn from ``x``: unchanged, noisy or shifted.

    Images (``pixel_max`` given) move in pixel units and stay in range; tables
    move their first ``numeric`` columns in units of each column's std.
    """
    if kind not in BATCHES:
        raise ValueError(f"unknown batch kind {kind!r}; expected one of {BATCHES}")
    rng = np.random.default_rng(seed)
    batch = x[rng.choice(len(x), size=min(cfg.batch_size, len(x)), replace=False)].astype(
        np.float64
    )
    cols = slice(None) if numeric is None else slice(0, numeric)
    unit = 1.0 if pixel_max is not None else np.nanstd(x[:, cols], axis=0)
    part = batch[:, cols]
    if kind == "noise":
        part += rng.normal(0.0, 1.0, size=part.shape) * cfg.noise_std * unit
    elif kind == "shift":
        part += cfg.intensity_shift * unit
    batch[:, cols] = part
    if pixel_max is not None:
        batch = np.clip(batch, 0.0, pixel_max)
    return batch.astype(np.float32)


def check_drift(reference, current, cfg: MonitorConfig, report: Path, batch: str) -> DriftResult:
    """Run Evidently's drift preset; drift when the drifted share reaches the threshold."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    categorical = [c for c in reference.columns if c == PREDICTION]
    definition = DataDefinition(
        numerical_columns=[c for c in reference.columns if c != PREDICTION],
        categorical_columns=categorical,
    )
    # Fixed tests, both giving p-values: Evidently's default switches numerical
    # columns to a distance once the reference passes 1,000 rows, which flags a
    # clean 300-sample batch as drifted about as often as not.
    preset = DataDriftPreset(
        drift_share=cfg.drift_threshold,
        num_method="ks",
        cat_method="chisquare",
        threshold=cfg.stattest_threshold,
    )
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = Report([preset]).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
    report.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(report))

    share, scores = 0.0, {}
    for metric in snapshot.dict()["metrics"]:
        name = metric.get("metric_name", "")
        if name.startswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif name.startswith("ValueDrift(column="):
            column = name.split("column=", 1)[1].split(",", 1)[0]
            scores[column] = float(metric["value"])
    drifted_columns = sorted(c for c, p in scores.items() if p < cfg.stattest_threshold)
    return DriftResult(
        batch=batch,
        drifted=share >= cfg.drift_threshold,
        drift_share=share,
        drifted_columns=drifted_columns,
        column_scores=scores,
        report=report,
    )


def champion_predictor(name: str):
    import mlflow

    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    return lambda x: np.asarray(model.predict(x))


def monitor_stage(params: Params, ws: Workspace) -> MonitorResult:
    from components import tracking

    cfg = params.monitor
    meta = load_meta(ws.prepared)
    predict = champion_predictor(params.register_.model_name)
    if meta["kind"] == "image":
        columns, numeric = None, None
        pixel_max = pixel_scale(params, meta)
    else:  # tables: their numeric columns, which come first in the encoding
        columns, pixel_max = meta["schema"]["numeric"], None
        numeric = len(columns)
    reference = feature_table(load_split(ws.prepared, "train").x, predict, columns)
    test = load_split(ws.prepared, "test")
    results = []
    for i, kind in enumerate(BATCHES):
        batch = simulate_batch(test.x, kind, cfg, pixel_max, params.seed + i, numeric)
        current = feature_table(batch, predict, columns)
        result = check_drift(reference, current, cfg, ws.report(f"drift_{kind}.html"), kind)
        print(
            f"  {kind:<6} batch: {'DRIFT' if result.drifted else 'no drift'}"
            f" (drifted share {result.drift_share:.2f}; columns: {result.drifted_columns or '-'})"
        )
        results.append(result)

    summary = MonitorResult(results=results, summary_file=ws.report("drift.json"))
    write_json(summary.summary_file, summary)
    with tracking.start_run(ws, params.data.name, run_name="monitor") as run:
        for r in results:
            run.log_metrics(
                {f"{r.batch}.drift_share": r.drift_share, f"{r.batch}.drifted": r.drifted}
            )
            run.log_artifact(r.report, "drift")
        run.log_artifact(summary.summary_file, "drift")
    return summary
