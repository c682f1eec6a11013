"""What the data gate checks, as the kinds see it: ``GateInput`` (one table, a row per
sample, plus what is known about it) and the helpers the kinds' checks share.

Each kind owns its part of the gate (``components/core/kinds/{image,table,text}_checks.py``,
asked through ``DataKind``): the table it is checked as, its expectation suite, the
faults of a single row, its part of the reference profile and the columns whose
distributions the report draws. The validate stage runs them with Great Expectations.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from components.core.config import ValidateConfig
    from components.core.kinds.base import DataKind
    from components.core.rawdata import RawData


@dataclass
class GateInput:
    """What the gate checks: one table, plus what is known about it."""

    of: DataKind  # the data kind it holds (``components.core.kinds``)
    table: object  # pandas.DataFrame
    label_column: str | None = None
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    pixel_max: float = 255.0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # files refused at read
    files: list[str] = field(default_factory=list)
    origin: Path | None = None
    name: str = "data"
    missing: dict[str, dict] = field(default_factory=dict)  # tables: each column's rule
    text_column: str | None = None  # texts: the column of the texts
    conflicts: str = "fail"  # data.text.conflicts: the same text under two labels fails
    task: str | None = None  # the prepared data's (None: a batch: the reference profile's)
    leakage: list[str] = field(default_factory=list)  # prepare's probable leakage, said

    def regression(self, reference: dict | None) -> bool:
        """Whether the label is a number (no classes to count or allow)."""
        return (self.task or (reference or {}).get("task")) == "regression"

    @property
    def kind(self) -> str:
        """The data kind's name: image, tabular, text."""
        return self.of.name

    def may_miss(self, column: str) -> float:
        """The share of empty cells the column may hold: 0 unless its rule drops or imputes."""
        rule = self.missing.get(column)
        return 0.0 if rule is None or rule["policy"] == "fail" else float(rule["max_share"])


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
