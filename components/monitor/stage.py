"""The drift self-test (the pipeline's ``monitor`` stage): does the detector see drift?

Not production monitoring (that is ``production.py``): it checks the detector
itself on batches simulated from the test split, clean, noisy and shifted, and
expects drift on the last two only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.core.config import MonitorConfig, Params
from components.core.kinds import kind as data_kind
from components.core.paths import Workspace
from components.core.records import write_json
from components.core.splits import load_meta, load_split, pixel_scale
from components.monitor.drift import DriftResult, champion_predictor, check_drift, feature_table

log = logging.getLogger(__name__)

BATCHES = ("clean", "noise", "shift")  # the self-test's batches
# ... and a change of domain for demonstrations and the learning closed-loop test:
# inverted images (light strokes on dark become dark on light), mirrored table columns
KINDS = (*BATCHES, "invert")


@dataclass(frozen=True)
class DriftSelfTest:
    results: list[DriftResult]
    summary_file: Path

    def verdict(self, batch: str) -> bool:
        return next(r.drifted for r in self.results if r.batch == batch)

    def summary(self) -> str:
        verdicts = ", ".join(
            f"{r.batch} {'DRIFT' if r.drifted else 'no drift'}" for r in self.results
        )
        return f"detector on simulated batches: {verdicts}; reports in {self.summary_file.parent}"


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
    fault: str,
    cfg: MonitorConfig,
    pixel_max: float | None,
    rng: np.random.Generator,
    numeric: int | None = None,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """``batch`` unchanged, noisy, shifted or inverted.

    Images (``pixel_max`` given) move in pixel units and stay in range; tables
    move their first ``numeric`` columns in units of each column's std (in
    ``reference``, ``batch`` itself by default). ``invert``: images become
    ``pixel_max - x``; table columns are mirrored around the reference mean.
    """
    if fault not in KINDS:
        raise ValueError(f"unknown batch kind {fault!r}; expected one of {KINDS}")
    batch = batch.astype(np.float64)
    cols = slice(None) if numeric is None else slice(0, numeric)
    reference = batch if reference is None else reference
    unit = 1.0 if pixel_max is not None else np.nanstd(reference[:, cols], axis=0)
    part = batch[:, cols]
    if fault == "noise":
        part += rng.normal(0.0, 1.0, size=part.shape) * cfg.noise_std * unit
    elif fault == "shift":
        part += cfg.intensity_shift * unit
    elif fault == "invert":
        center = pixel_max / 2 if pixel_max is not None else np.nanmean(reference[:, cols], axis=0)
        part[:] = 2 * center - part
    batch[:, cols] = part
    if pixel_max is not None:
        batch = np.clip(batch, 0.0, pixel_max)
    return batch.astype(np.float32)


def drift_selftest_stage(params: Params, ws: Workspace) -> DriftSelfTest:
    from components.core import tracking

    meta = load_meta(ws.prepared)
    predict = champion_predictor(params.registry.model_name)
    if data_kind(meta["kind"]).tokenized:
        results = text_selftest(params, ws, meta, predict)
    else:
        results = data_selftest(params, ws, meta, predict)
    summary = DriftSelfTest(results=results, summary_file=ws.report("drift.json"))
    write_json(summary.summary_file, summary)
    with tracking.start_run(ws, params.data.name, run_name="monitor") as run:
        for r in results:
            run.log_metrics(
                {f"{r.batch}.drift_share": r.drift_share, f"{r.batch}.drifted": r.drifted}
            )
            run.log_artifact(r.report, "drift")
        run.log_artifact(summary.summary_file, "drift")
    return summary


def _logged(result: DriftResult) -> DriftResult:
    log.info(
        f"  drift self-test, {result.batch:<6} batch: {'DRIFT' if result.drifted else 'no drift'}"
        f" (drifted share {result.drift_share:.2f}; columns: {result.drifted_columns or '-'})"
    )
    return result


def text_selftest(params: Params, ws: Workspace, meta: dict, predict) -> list[DriftResult]:
    """The detector on texts: the training texts (as the production monitor sees them)
    against test texts, clean, noisy, shifted."""
    from components.core.splits import load_rows
    from components.monitor.texts import changed_texts, text_features, text_reference
    from components.prepare import tokenizer as tok

    cfg, column, classes = params.monitor, meta["text"]["column"], meta["classes"]
    tokenizer = tok.load(ws.prepared / meta["text"]["tokenizer"])
    length = meta["text"]["max_length"]
    reference = text_reference(ws, meta, predict)
    test = load_rows(ws.prepared, "test")[column].tolist()
    results = []
    for i, kind in enumerate(BATCHES):
        rng = np.random.default_rng(params.seed + i)
        picked = [test[j] for j in rng.choice(len(test), min(cfg.batch_size, len(test)), False)]
        current = text_features(changed_texts(picked, kind, rng), tokenizer, length, classes,
                                predict)  # fmt: skip
        report = ws.report(f"drift_{kind}.html")
        results.append(_logged(check_drift(reference, current, cfg, report, kind)))
    return results


def data_selftest(params: Params, ws: Workspace, meta: dict, predict) -> list[DriftResult]:
    """The detector on images (their statistics) or tables (their numeric columns)."""
    cfg = params.monitor
    if data_kind(meta["kind"]).pixels:
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
        report = ws.report(f"drift_{kind}.html")
        results.append(_logged(check_drift(reference, current, cfg, report, kind)))
    return results
