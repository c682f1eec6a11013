"""Production monitoring (the ``monitor`` flow): drift and quality of the logged traffic.

``check_production`` reads the inference log from where the last check stopped
and asks for a retrain on drift, at most once per cool-down.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.core import inference_log
from components.core.config import Params
from components.core.kinds import kind as data_kind
from components.core.paths import Workspace
from components.core.records import write_json
from components.core.splits import load_meta, load_split
from components.core.tasks import task_of
from components.core.tasks.regression import regression_scores
from components.ingest.harvest import log_file, pending
from components.monitor.drift import (
    PREDICTION,
    DriftResult,
    champion_predictor,
    check_drift,
    feature_table,
)
from components.prepare.stage import reference_file

logger = logging.getLogger(__name__)  # `log` names the inference log here


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
    learnable: int = 0  # labelled predictions with inputs that no harvest took yet
    alert: str | None = None  # drift with nothing labelled to learn from: labels are needed
    # what drives the champion's answers now against its validation explanation
    # (monitor/attribution.py): "the model now leans on X", or why it was not measured
    leaning: str | None = None
    leaning_moved: list | None = None  # {feature, reference, now, change}, largest first
    error: dict | None = None  # a regression's on the labelled rows: rmse, mae

    def summary(self) -> str:
        if self.drift is None:
            return self.reason
        if not self.labelled:
            quality = "no labels yet"
        elif self.error is not None:
            quality = (f"RMSE {self.error['rmse']:.4f}, MAE {self.error['mae']:.4f} on"
                       f" {self.labelled} labelled")  # fmt: skip
        else:
            quality = f"accuracy {self.accuracy:.4f} on {self.labelled} labelled"
        return (
            f"{self.rows} predictions (ids {self.first_id}-{self.last_id}, {self.tested} tested):"
            f" {'DRIFT' if self.drift.drifted else 'no drift'}"
            f" (drifted share {self.drift.drift_share:.2f}; columns:"
            f" {self.drift.drifted_columns or '-'}); {quality}; {self.reason}"
            + (f"; {self.leaning}" if self.leaning else "")
            + (f"; ALERT: {self.alert}" if self.alert else "")
        )

    def markdown(self) -> str:
        """The check as the Prefect artifact shows it; names that came with the traffic
        (words, columns) are escaped (``as_markdown``)."""
        lines = [f"**{as_markdown(self.summary())}**", "", "| column | p-value | drifted |",
                 "|---|---|---|"]  # fmt: skip
        if self.drift is not None:
            for column, p in sorted(self.drift.column_scores.items()):
                drifted = "yes" if column in self.drift.drifted_columns else "no"
                lines.append(f"| {column} | {p:.4g} | {drifted} |")
        if self.leaning_moved:
            lines += ["", f"**{as_markdown(self.leaning)}**", "", "| feature | share"
                      " (validation) | share (now) |", "|---|---|---|"]  # fmt: skip
            lines += [f"| {as_markdown(m['feature'])} | {m['reference']:.3f} | {m['now']:.3f} |"
                      for m in self.leaning_moved]  # fmt: skip
        return "\n".join(lines)


MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]()#!|{}])")


def as_markdown(text: object) -> str:
    """``text`` as literal markdown: its markup characters escaped, ``<`` and ``>`` as
    entities (a word of a text that was sent is not a link, a tag or a table cell's end)."""
    escaped = MARKDOWN_SPECIAL.sub(r"\\\1", str(text))
    return escaped.replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def champion_reference_file(name: str, ws: Workspace) -> Path | None:
    """Where the sample of the champion's training data is kept (None: it is not): what
    drift is measured against, so a retrain that was not promoted, or a rollback, does not
    move the reference."""
    import mlflow  # heavy (~10 s): loaded by the check that needs it

    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias(name, "champion")
    data = client.get_run(version.run_id).data.tags.get("mloop.data_content")
    path = reference_file(ws, data) if data else None
    if path is not None and path.is_file():
        return path
    logger.warning(f"[monitor] no kept training data of {name} version {version.version}"
                   f" (data {data}): measuring drift against the prepared train split")  # fmt: skip
    return None


def champion_reference(name: str, ws: Workspace):
    """The champion's training data (a sample of it; ``champion_reference_file``)."""
    path = champion_reference_file(name, ws)
    return np.load(path, allow_pickle=False) if path else load_split(ws.prepared, "train").x


def compare_attributions(params: Params, ws: Workspace, meta: dict, log: Path, table):
    """``attribution.leaning`` of the rows read; a fault in it is said, not raised: the
    drift check and its retrain decision stand without it."""
    from components.monitor.attribution import leaning

    try:
        return leaning(params, ws, meta, log, table)
    except Exception as err:  # noqa: BLE001 (an explainer that cannot run stops no check)
        logger.warning(f"[monitor] attributions not compared: {type(err).__name__}: {err}")
        return f"attributions not compared: {type(err).__name__}: {err}"


def learnable_rows(ws: Workspace) -> int:
    """Labelled predictions that kept their inputs and that no harvest took yet."""
    rows = pending(ws, inputs=False)
    return 0 if rows is None else int((rows["size"] > 0).sum())


def check_production(params: Params, ws: Workspace, now: float | None = None) -> ProductionCheck:
    """Drift and quality of the predictions logged since the last check; retrain or not.

    Reads the log after the id the last check stopped at (``.mloop/monitor.json``);
    with fewer than ``monitor.min_rows`` new rows it waits, leaving them for next
    time. A drift asks for a retrain unless one was asked for within
    ``monitor.cooldown_minutes``. The report, a JSON summary and an MLflow run
    record every check that ran.
    """
    import pandas as pd

    from components.core import tracking

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

    log = log_file(ws)
    if log is None:
        return waiting(0, "the inference log is off (MLOOP_INFERENCE_LOG=off)")
    if not log.is_file():
        return waiting(0, f"no inference log at {log} yet (mloop serve writes it)")
    if last_id > inference_log.newest_id(log):  # a new log replaced the checked one
        logger.info(f"[monitor] {log} is newer than the last check: reading from its start")
        last_id = 0
    batch = inference_log.read(log, after=last_id)
    if len(batch) < cfg.min_rows:
        return waiting(len(batch), f"{len(batch)} new predictions, {cfg.min_rows} needed")
    meta = load_meta(ws.prepared)
    kind = data_kind(meta["kind"])
    table = inference_log.named(batch.table, kind.name)  # the statistics, as the kind has them

    predict = champion_predictor(params.registry.model_name)
    current = table[[*kind.drifting, PREDICTION]]
    values = task_of(meta).outputs_values  # a regression: the prediction is a number
    if values:
        current = current.assign(**{PREDICTION: pd.to_numeric(current[PREDICTION],
                                                              errors="coerce")})  # fmt: skip
    if kind.tokenized:  # the logged descriptors against the training texts'
        from components.monitor.texts import text_reference

        path = champion_reference_file(params.registry.model_name, ws)
        reference = text_reference(ws, meta, predict, path)
    else:
        train_x = champion_reference(params.registry.model_name, ws)
        reference = feature_table(train_x, predict, classes=meta["classes"])
    if len(current) > cfg.test_rows:
        current = current.sample(cfg.test_rows, random_state=params.seed + batch.last)
    current = current.reset_index(drop=True)
    drift = check_drift(reference, current, cfg, ws.report("production_drift.html"), "production")

    leaning = compare_attributions(params, ws, meta, log, batch.table)
    labelled = table[table["label"].notna()]
    accuracy, error = None, None
    if len(labelled) and values:  # error on labelled traffic, in the label's units
        pairs = labelled[["label", "prediction"]].apply(pd.to_numeric, errors="coerce").dropna()
        found = regression_scores(pairs["label"].to_numpy(), pairs["prediction"].to_numpy())
        error = {"rmse": found.rmse, "mae": found.mae}
    elif len(labelled):
        accuracy = float((labelled["label"] == labelled["prediction"]).mean())
    last_retrain = state.get("retrain_requested_at")
    cooling = last_retrain is not None and now - last_retrain < cfg.cooldown_minutes * 60
    learnable, alert = learnable_rows(ws), None
    if drift.drifted and learnable < params.gate.min_rows:
        alert = (
            f"drift, and {learnable} labelled predictions to learn from (validate.min_rows"
            f" {params.gate.min_rows} make a batch): labels are needed. POST the true labels of"
            " served requests to /feedback; a retrain now would only relearn the old data"
        )
    if not drift.drifted:
        retrain, reason = False, "no retrain: no drift"
    elif alert:
        retrain, reason = False, "no retrain: drift, but no labelled data yet (labels are needed)"
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
        error=error,
        retrain=retrain,
        reason=reason,
        summary_file=summary_file,
        seconds=time.perf_counter() - started,
        learnable=learnable,
        alert=alert,
        leaning=leaning if isinstance(leaning, str) else leaning.line,
        leaning_moved=None if isinstance(leaning, str) else leaning.moved,
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
        if error is not None:
            metrics |= {"production_rmse": error["rmse"], "production_mae": error["mae"]}
        run.log_metrics(metrics)
        if alert:
            run.set_tags({"mloop.alert": alert})
        run.set_tags({"mloop.leaning": result.leaning})
        run.log_artifact(drift.report, "drift")
        run.log_artifact(summary_file, "drift")
    write_json(ws.monitor_state, state)  # only once the check is on record
    return result
