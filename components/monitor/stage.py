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
from components.core.kinds.base import drifted
from components.core.paths import Workspace
from components.core.records import write_json
from components.core.splits import load_meta, load_split, pixel_scale
from components.monitor.drift import DriftResult, champion_predictor, check_drift, feature_table

log = logging.getLogger(__name__)

BATCHES = ("clean", "noise", "shift")  # the self-test's batches (of the kinds' FAULTS)


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
    from components.core.kinds import tokenizer as tok
    from components.core.kinds.texts import TEXTS
    from components.core.splits import load_rows
    from components.monitor.texts import text_features, text_reference

    cfg, column, classes = params.monitor, meta["text"]["column"], meta["classes"]
    tokenizer = tok.load(ws.prepared / meta["text"]["tokenizer"])
    length = meta["text"]["max_length"]
    reference = text_reference(ws, meta, predict)
    test = load_rows(ws.prepared, "test")[column].tolist()
    results = []
    for i, kind in enumerate(BATCHES):
        rng = np.random.default_rng(params.seed + i)
        picked = [test[j] for j in rng.choice(len(test), min(cfg.batch_size, len(test)), False)]
        current = text_features(TEXTS.changed(picked, kind, rng), tokenizer, length, classes,
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
