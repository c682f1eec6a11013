"""Drift with Evidently: data and prediction drift of a batch against the training data.

Images are compared through per-sample statistics (mean, std, min, max, ink:
the share of lit pixels) plus the champion's predicted class, so the same
report works for any image size. ``check_drift`` is the gate: drift when the
share of drifted columns reaches ``monitor.drift_threshold``. Column names and
category values reach Evidently in a safe form, so its HTML is safe to open.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.core.config import MonitorConfig
from components.core.kinds.base import array_statistics as statistics
from components.core.kinds.images import IMAGES
from components.core.kinds.texts import TEXTS
from components.core.predict import CHUNK, load_registered
from components.core.text import text_statistics

FEATURES = list(IMAGES.logged)  # what array_statistics computes (TABLES.logged too)
PREDICTION = "prediction"


@dataclass(frozen=True)
class DriftResult:
    batch: str
    drifted: bool
    drift_share: float
    drifted_columns: list[str]
    column_scores: dict[str, float]
    report: Path


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
    else:  # a block at a time: a split may be larger than memory as float64
        stats = [statistics(np.asarray(x[s : s + CHUNK])) for s in range(0, len(x), CHUNK)]
        table = pd.DataFrame(np.concatenate(stats) if stats else np.zeros((0, len(FEATURES))),
                             columns=FEATURES)  # fmt: skip
    if predict is not None:  # the predictors of core.predict take a split in chunks
        out = predict(x) if len(x) else np.zeros((0, 1 if classes == [] else 2))
        if out.shape[1] == 1:  # a regression: the value, a numeric column
            table[PREDICTION] = out[:, 0]
            return table
        index = out.argmax(axis=1)
        names = index if classes is None else np.asarray(classes, dtype=object)[index]
        table[PREDICTION] = names.astype(str)
    return table


# Texts are compared through descriptors of each text (components/monitor/texts.py; the
# production monitor): length, share of non-letters, of digits, of unknown tokens.
TEXT_FEATURES = list(TEXTS.drifting)


def text_feature_table(texts, unknown_share: np.ndarray, predictions=None):
    """One row per text: its ``TEXT_FEATURES`` (``unknown_share``: the share of its tokens
    the tokenizer did not know, from ``core.kinds.tokenizer.encode``) and, given, the
    predicted class as text."""
    import pandas as pd

    stats = text_statistics(texts)
    table = pd.DataFrame({c: stats[c] for c in TEXT_FEATURES if c in stats})
    table["unknown"] = np.asarray(unknown_share, dtype=np.float64)
    if predictions is not None:
        table[PREDICTION] = np.asarray(predictions).astype(str)
    return table[[*TEXT_FEATURES, *([PREDICTION] if predictions is not None else [])]]


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

    # the predicted class is categorical; a regression's predicted value is a number
    categorical = [c for c in reference.columns
                   if c == PREDICTION and reference[c].dtype.kind not in "fiu"]  # fmt: skip
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
    """The registered champion's probabilities, ``CHUNK`` rows at a time (``load_registered``)."""
    return load_registered(f"models:/{name}@champion")
