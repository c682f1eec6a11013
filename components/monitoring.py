"""Drift monitoring with Evidently: data and prediction drift against the training data.

Images are compared through per-sample statistics (mean, std, min, max, ink:
the share of lit pixels) plus the champion's predicted class, so the same
report works for any image size. ``check_drift`` is the gate: drift when the
share of drifted columns reaches ``monitor.drift_threshold``.

``check_production`` (the ``monitor`` flow) reads the inference log from where
the last check stopped and asks for a retrain on drift, at most once per
cool-down. ``monitor_stage`` (the pipeline's ``monitor`` stage) checks the
detector itself on batches simulated from the test split: clean, noisy, shifted.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.config import MonitorConfig, Params
from components.data import load_meta, load_split, pixel_scale
from components.inference_log import STATISTICS, statistics
from components.paths import Workspace
from components.records import write_json

FEATURES = list(STATISTICS)
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
    classes: list | None = None,
):
    """Images: per-sample statistics. Tables (``columns`` given): those feature columns.

    With ``predict``, a ``prediction`` column: the class name (``classes`` given, as
    the service logs it) or the class index, as text.
    """
    import pandas as pd

    if columns is not None:
        table = pd.DataFrame(x[:, : len(columns)].astype(np.float64), columns=columns)
    else:
        table = pd.DataFrame(statistics(x), columns=FEATURES)
    if predict is not None:
        index = predict(x.astype(np.float32)).argmax(axis=1)
        names = index if classes is None else np.asarray(classes, dtype=object)[index]
        table[PREDICTION] = names.astype(str)
    return table


def simulate_batch(
    x: np.ndarray,
    kind: str,
    cfg: MonitorConfig,
    pixel_max: float | None,
    seed: int,
    numeric: int | None = None,
) -> np.ndarray:
    """A production-like batch of ``cfg.batch_size`` drawn from ``x``: see ``drifted``."""
    rng = np.random.default_rng(seed)
    batch = x[rng.choice(len(x), size=min(cfg.batch_size, len(x)), replace=False)]
    return drifted(batch, kind, cfg, pixel_max, rng, numeric, reference=x)


def drifted(
    batch: np.ndarray,
    kind: str,
    cfg: MonitorConfig,
    pixel_max: float | None,
    rng: np.random.Generator,
    numeric: int | None = None,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """``batch`` unchanged, noisy or shifted.

    Images (``pixel_max`` given) move in pixel units and stay in range; tables
    move their first ``numeric`` columns in units of each column's std (in
    ``reference``, ``batch`` itself by default).
    """
    if kind not in BATCHES:
        raise ValueError(f"unknown batch kind {kind!r}; expected one of {BATCHES}")
    batch = batch.astype(np.float64)
    cols = slice(None) if numeric is None else slice(0, numeric)
    reference = batch if reference is None else reference
    unit = 1.0 if pixel_max is not None else np.nanstd(reference[:, cols], axis=0)
    part = batch[:, cols]
    if kind == "noise":
        part += rng.normal(0.0, 1.0, size=part.shape) * cfg.noise_std * unit
    elif kind == "shift":
        part += cfg.intensity_shift * unit
    batch[:, cols] = part
    if pixel_max is not None:
        batch = np.clip(batch, 0.0, pixel_max)
    return batch.astype(np.float32)


# No comma: Evidently names its metrics "ValueDrift(column=NAME, ...)".
SAFE_PUNCTUATION = frozenset(" _-.:;=+()[]/%#@!?*")
MAX_NAME = 100


def safe_text(text: object) -> str:
    """``text`` with only letters, digits and harmless punctuation, for Evidently's HTML.

    Evidently writes column names and category values into its report unescaped,
    inside a script: without ``<``, quotes and backslashes no tag can open or close.
    """
    kept = "".join(ch if ch.isalnum() or ch in SAFE_PUNCTUATION else "_" for ch in str(text))
    return kept[:MAX_NAME] or "_"


def safe_names(names) -> dict[str, str]:
    """Each name's safe form (``safe_text``), made unique with a suffix where two meet."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        safe, n = safe_text(name), 2
        while safe in taken:
            safe, n = f"{safe_text(name)[: MAX_NAME - 4]}_{n}", n + 1
        out[name] = safe
        taken.add(safe)
    return out


def _safe_frame(frame, names: dict[str, str], categorical: list[str]):
    frame = frame.rename(columns=names)
    for column in categorical:
        frame[names[column]] = frame[names[column]].map(safe_text)
    return frame


def check_drift(reference, current, cfg: MonitorConfig, report: Path, batch: str) -> DriftResult:
    """Run Evidently's drift preset; drift when the drifted share reaches the threshold.

    Column names and category values reach Evidently in their safe form (the HTML
    report is safe to open); the result names the columns as given.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    categorical = [c for c in reference.columns if c == PREDICTION]
    names = safe_names(reference.columns)
    given = {safe: name for name, safe in names.items()}
    reference = _safe_frame(reference, names, categorical)
    current = _safe_frame(current, names, categorical)
    categorical = [names[c] for c in categorical]
    definition = DataDefinition(
        numerical_columns=[c for c in reference.columns if c not in categorical],
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
            scores[given.get(column, column)] = float(metric["value"])
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


@dataclass(frozen=True)
class ProductionCheck:
    """One check of the inference log: what was read, what drifted, what it asked for."""

    rows: int  # predictions read (ids first_id..last_id)
    first_id: int
    last_id: int
    model_versions: dict[str, int]
    drift: DriftResult | None  # None: fewer than monitor.min_rows new predictions
    tested: int  # rows drift was tested on: all, or a sample of monitor.test_rows
    prediction_drift: bool
    labelled: int
    accuracy: float | None  # on the rows whose true label came back
    retrain: bool
    reason: str
    summary_file: Path
    seconds: float

    def summary(self) -> str:
        if self.drift is None:
            return self.reason
        quality = (
            f"accuracy {self.accuracy:.4f} on {self.labelled} labelled"
            if self.labelled
            else "no labels yet"
        )
        return (
            f"{self.rows} predictions (ids {self.first_id}-{self.last_id}, {self.tested} tested):"
            f" {'DRIFT' if self.drift.drifted else 'no drift'}"
            f" (drifted share {self.drift.drift_share:.2f}; columns:"
            f" {self.drift.drifted_columns or '-'}); {quality}; {self.reason}"
        )

    def markdown(self) -> str:
        lines = [f"**{self.summary()}**", "", "| column | p-value | drifted |", "|---|---|---|"]
        if self.drift is not None:
            for column, p in sorted(self.drift.column_scores.items()):
                drifted = "yes" if column in self.drift.drifted_columns else "no"
                lines.append(f"| {column} | {p:.4g} | {drifted} |")
        return "\n".join(lines)


def log_path(ws: Workspace) -> Path:
    return Path(os.environ.get("MLOOP_INFERENCE_LOG") or ws.inference_log)


def check_production(params: Params, ws: Workspace, now: float | None = None) -> ProductionCheck:
    """Drift and quality of the predictions logged since the last check; retrain or not.

    Reads the log after the id the last check stopped at (``.mloop/monitor.json``);
    with fewer than ``monitor.min_rows`` new rows it waits, leaving them for next
    time. A drift asks for a retrain unless one was asked for within
    ``monitor.cooldown_minutes``. The report, a JSON summary and an MLflow run
    record every check that ran.
    """
    from components import inference_log, tracking

    started = time.perf_counter()
    now = time.time() if now is None else now
    cfg = params.monitor
    state = json.loads(ws.monitor_state.read_text()) if ws.monitor_state.is_file() else {}
    last_id = int(state.get("last_id", 0))
    summary_file = ws.report("production_drift.json")

    def waiting(rows: int, why: str) -> ProductionCheck:
        return ProductionCheck(
            rows=rows, first_id=last_id + 1, last_id=last_id + rows, model_versions={},
            drift=None, tested=0, prediction_drift=False, labelled=0, accuracy=None, retrain=False,
            reason=f"waiting: {why}", summary_file=summary_file,
            seconds=time.perf_counter() - started,
        )  # fmt: skip

    log = log_path(ws)
    if not log.is_file():
        return waiting(0, f"no inference log at {log} yet (mloop serve writes it)")
    if last_id > inference_log.newest_id(log):  # a new log replaced the checked one
        print(f"[monitor] {log} is newer than the last check: reading from its start")
        last_id = 0
    batch = inference_log.read(log, after=last_id)
    table = batch.table
    if len(batch) < cfg.min_rows:
        return waiting(len(batch), f"{len(batch)} new predictions, {cfg.min_rows} needed")

    predict = champion_predictor(params.register_.model_name)
    train_x = load_split(ws.prepared, "train").x
    reference = feature_table(train_x, predict, classes=load_meta(ws.prepared)["classes"])
    current = table[[*FEATURES, PREDICTION]]
    if len(current) > cfg.test_rows:
        current = current.sample(cfg.test_rows, random_state=params.seed + batch.last)
    current = current.reset_index(drop=True)
    drift = check_drift(reference, current, cfg, ws.report("production_drift.html"), "production")

    labelled = table[table["label"].notna()]
    accuracy = (
        float((labelled["label"] == labelled["prediction"]).mean()) if len(labelled) else None
    )
    last_retrain = state.get("retrain_requested_at")
    cooling = last_retrain is not None and now - last_retrain < cfg.cooldown_minutes * 60
    if not drift.drifted:
        retrain, reason = False, "no retrain: no drift"
    elif not cfg.retrain_on_drift:
        retrain, reason = False, "no retrain: monitor.retrain_on_drift is off"
    elif cooling:
        left = (cfg.cooldown_minutes * 60 - (now - last_retrain)) / 60
        retrain, reason = False, f"no retrain: cool-down, {left:.0f} min left"
    else:
        retrain, reason = True, "retrain: drift"
    state = {**state, "last_id": batch.last, "checked_at": now}
    if retrain:
        state["retrain_requested_at"] = now
    result = ProductionCheck(
        rows=len(batch),
        first_id=batch.first,
        last_id=batch.last,
        model_versions={str(k): int(v) for k, v in table["model_version"].value_counts().items()},
        drift=drift,
        tested=len(current),
        prediction_drift=PREDICTION in drift.drifted_columns,
        labelled=len(labelled),
        accuracy=accuracy,
        retrain=retrain,
        reason=reason,
        summary_file=summary_file,
        seconds=time.perf_counter() - started,
    )
    write_json(summary_file, result)
    with tracking.start_run(ws, params.data.name, run_name="monitor-production") as run:
        metrics = {
            "rows": result.rows,
            "drift_share": drift.drift_share,
            "drifted": drift.drifted,
            "retrain": retrain,
            "labelled": result.labelled,
        }
        if accuracy is not None:
            metrics["production_accuracy"] = accuracy
        run.log_metrics(metrics)
        run.log_artifact(drift.report, "drift")
        run.log_artifact(summary_file, "drift")
    write_json(ws.monitor_state, state)  # only once the check is on record
    return result
