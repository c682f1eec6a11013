"""What the data gate checks, as the kinds see it: ``GateInput`` (one table, a row per
sample, plus what is known about it) and the helpers the kinds' checks share.

Each kind owns its part of the gate (``components/core/kinds/{image,table,text}_checks.py``,
asked through ``DataKind``): the table it is checked as, its expectation suite, the
faults of a single row, its part of the reference profile and the columns whose
distributions the report draws. The validate stage runs them with Great Expectations.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

from components.core.kinds.base import DataKind, GateInput  # noqa: F401 -- GateInput: its home

if TYPE_CHECKING:
    from components.core.config import ValidateConfig
    from components.core.rawdata import RawData


def gate_of(kind: DataKind, raw: RawData, name: str, splits=None,
            conflicts: str = "fail") -> GateInput:  # fmt: skip
    """What the gate checks of ``raw``, data of ``kind`` (``DataKind.gate_table``);
    ``conflicts``: data.text.conflicts (any other policy than fail lets prepare settle
    the same text under two labels)."""
    return GateInput(
        of=kind, table=kind.gate_table(raw, splits), label_column=raw.label_column,
        numeric=raw.numeric, categorical=raw.categorical, pixel_max=raw.pixel_max,
        rejected=raw.rejected, files=raw.files, origin=raw.origin, name=name,
        missing=raw.missing, text_column=raw.text_column, conflicts=conflicts,
    )  # fmt: skip


def split_column(names: list[str], frames: list) -> np.ndarray:
    """Each row's split name, for ``frames`` read split by split."""
    return np.concatenate([[s] * len(f) for s, f in zip(names, frames, strict=True)])


def digests(rows: np.ndarray) -> list[str]:
    return [hashlib.blake2b(r.tobytes(), digest_size=8).hexdigest() for r in rows]


# ---------------------------------------------------------------- rules from params and profile


def widen(low: float, high: float, share: float) -> tuple[float, float]:
    """The range widened by ``share`` of its span (validate.range_margin) on each side."""
    margin = share * max(high - low, abs(high), 1e-9)
    return low - margin, high + margin


def mean_band(stat: dict, rows: int, shift: float) -> tuple[float, float]:
    """Where a batch's mean may lie: the reference mean, give or take 4 standard errors of
    a batch of ``rows`` and ``shift`` reference standard deviations (or ``shift`` of the
    mean, for texts' statistics: ``max_text_shift``)."""
    margin = 4 * stat["std"] / max(rows, 1) ** 0.5 + shift
    return stat["mean"] - margin, stat["mean"] + margin


def expected_labels(cfg: ValidateConfig, reference: dict | None) -> list[str] | None:
    if cfg.allowed_labels:
        return [str(v) for v in cfg.allowed_labels]
    return [str(v) for v in reference["labels"]] if reference else None


def already_in(batch, data) -> object:
    """Which rows of table ``batch`` (a gate table) are rows of table ``data`` already: the
    same values in their common columns, the label included (a pandas bool Series on
    ``batch``'s index), and how many rows ``data`` repeats of its own. Values are compared
    as text, as both were read from files."""
    import pandas as pd

    derived = {"_split", "_digest", "_finite", "_conflict"}
    common = sorted((set(batch.columns) & set(data.columns)) - derived)
    if not common or not len(data):
        return pd.Series(False, index=batch.index), 0

    def keys(table):
        return pd.util.hash_pandas_object(table[common].astype(str), index=False).to_numpy()

    known = keys(data)
    repeats = len(known) - len(np.unique(known))
    return pd.Series(np.isin(keys(batch), known), index=batch.index), repeats
