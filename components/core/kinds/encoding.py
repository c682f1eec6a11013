"""The table kind's encoder: one implementation for training, serving and harvest.

``TableEncoding.fit`` learns it on the training split's rows (each column's gap rule, the
categories seen in training); the prepare stage saves it in ``meta.json`` as the model's
``schema`` (``as_schema``), the package stage puts that in the Bento, and the service
reads it back (``from_schema``). Then:

- ``encode(frame)`` turns the training file's rows into the network's input;
- ``encode_rows(rows)`` turns a request's ``[{column: value}, ...]`` into the same input,
  after checking every value (``RowRefused`` names the first bad one);
- ``decode(x)`` turns logged inputs back into rows, for harvest.

Numeric columns come first, as float32 (a gap stays NaN: the network fills it from
``feature_fill``, trees route it), then each categorical column one-hot over its training
categories (a gap under an ``impute`` rule becomes the fill category first).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from components.core.kinds.base import Refused
from components.core.messages import short
from components.core.numbers import finite_number
from components.core.rawdata import DataError, RawData

FLOAT32_MAX = float(np.finfo(np.float32).max)


class RowRefused(Refused):
    """A request row the encoding cannot take: a missing, unknown or mistyped value."""


@dataclass(frozen=True)
class TableEncoding:
    label: str
    numeric: list[str]
    categorical: dict[str, list[str]]  # column -> its training categories, sorted
    missing: dict[str, dict] = field(default_factory=dict)  # column -> its gap rule
    fill: dict[str, float | str] = field(default_factory=dict)  # column -> imputed value

    @property
    def encoded(self) -> list[str]:
        """The input's columns: the numeric ones, then ``column=category`` for each one-hot."""
        return [*self.numeric, *(f"{c}={v}" for c, cats in self.categorical.items() for v in cats)]

    @property
    def feature_fill(self) -> list[float]:
        """Per input column, what the network puts in a NaN (the numeric columns' fills)."""
        numeric = [float(self.fill.get(c, 0.0)) for c in self.numeric]
        return numeric + [0.0] * (len(self.encoded) - len(self.numeric))

    # ------------------------------------------------------------ fitted, saved, loaded

    @classmethod
    def fit(cls, raw: RawData, train_idx: np.ndarray) -> TableEncoding:
        """The encoding of ``raw``'s columns, learnt on the rows ``train_idx`` only."""
        frame, fills, categories = raw.frame, {}, {}
        for col in raw.numeric:
            rule = raw.missing.get(col)
            if rule and rule["policy"] == "impute":
                fills[col] = _fill_value(frame[col].iloc[train_idx], rule, numeric=True)
        for col in raw.categorical:
            values = _as_text(frame[col])
            rule = raw.missing.get(col)
            if rule and rule["policy"] == "impute":
                fills[col] = _fill_value(values.iloc[train_idx], rule, numeric=False)
                values = values.fillna(fills[col])
            # no rule to fill a gap: the gate refuses it; "nan" keeps the column's arity
            categories[col] = sorted(values.fillna("nan").iloc[train_idx].unique().tolist())
        return cls(raw.label_column, list(raw.numeric), categories, dict(raw.missing), fills)

    def as_schema(self) -> dict:
        """What ``meta.json`` and the Bento keep of it (``from_schema`` reads it back)."""
        return {
            "label": self.label,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "encoded": self.encoded,
            "missing": self.missing,  # each column's rule: what the gate and the service accept
            "fill": self.fill,  # column -> imputed value
            "feature_fill": self.feature_fill,  # per encoded feature: what the network fills
        }

    @classmethod
    def from_schema(cls, schema: dict) -> TableEncoding:
        return cls(schema["label"], list(schema["numeric"]), dict(schema["categorical"]),
                   dict(schema.get("missing", {})), dict(schema.get("fill", {})))  # fmt: skip

    # ------------------------------------------------------------ the three directions

    def encode(self, frame) -> np.ndarray:
        """A table's rows (the training file's columns, as read) as the model's input."""
        import pandas as pd

        numbers = {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float32)
                   for c in self.numeric}  # fmt: skip
        texts = {}
        for col in self.categorical:
            values = _as_text(frame[col])
            if col in self.fill:
                values = values.fillna(self.fill[col])
            texts[col] = values.fillna("nan").to_numpy(object)
        return self._assemble(len(frame), numbers, texts)

    def encode_rows(self, rows: list[dict]) -> np.ndarray:
        """A request's rows (objects of the training file's columns) as the model's input:
        every value checked first, ``null`` only where training imputed the column."""
        known = set(self.numeric) | set(self.categorical)
        numbers = {c: np.empty(len(rows), np.float32) for c in self.numeric}
        texts = {c: np.empty(len(rows), object) for c in self.categorical}
        for i, row in enumerate(rows):
            missing = sorted(known - set(row))
            if missing:
                raise RowRefused(f"row {i}: missing column(s) {short(missing)}")
            unknown = sorted(set(row) - known - {self.label})
            if unknown:
                raise RowRefused(f"row {i}: unknown column(s) {short(unknown)}")
            for col in self.numeric:
                numbers[col][i] = self._number(i, col, row[col])
            for col, cats in self.categorical.items():
                value = row[col]
                if value is None and col not in self.fill:
                    raise RowRefused(f"row {i}: {col} is required (training had no gaps in it)")
                value = str(value if value is not None else self.fill[col])
                if value not in cats:
                    raise RowRefused(f"row {i}: {col}={short(value)} is not one of {short(cats)}")
                texts[col][i] = value
        return self._assemble(len(rows), numbers, texts)

    def decode(self, x: np.ndarray, labels: np.ndarray):
        """Rows back from encoded inputs (the inference log keeps them): numbers as they
        were (NaN: a gap the model filled), each category from its one-hot block (a gap
        that training imputed comes back as its fill), the label column from ``labels``."""
        import pandas as pd

        data, at = {}, len(self.numeric)
        for j, col in enumerate(self.numeric):
            data[col] = x[:, j].astype(np.float64)
        for col, cats in self.categorical.items():
            block = x[:, at : at + len(cats)]
            names = np.asarray(cats, dtype=object)[block.argmax(1)]
            data[col] = np.where(block.max(axis=1) > 0, names, None)
            at += len(cats)
        data[self.label] = labels
        return pd.DataFrame(data)

    def _number(self, i: int, col: str, value) -> float:
        if value is None and col in self.fill:
            return np.nan  # the network imputes it as training did; trees route it
        if value is None:
            raise RowRefused(f"row {i}: {col} is required (training had no gaps in it)")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RowRefused(f"row {i}: {col} must be a number, got {short(value)}")
        if not finite_number(value, FLOAT32_MAX):
            raise RowRefused(f"row {i}: {col} must be finite, within the float32 range")
        return value

    def _assemble(self, n: int, numbers: dict, texts: dict) -> np.ndarray:
        """The input from each numeric column's float32 values and each categorical
        column's category names (one of its training categories, or an unseen one: all 0)."""
        out = np.zeros((n, len(self.encoded)), np.float32)
        for j, col in enumerate(self.numeric):
            out[:, j] = numbers[col]
        at, rows = len(self.numeric), np.arange(n)
        for col, cats in self.categorical.items():
            index = {c: k for k, c in enumerate(cats)}
            codes = np.fromiter((index.get(v, -1) for v in texts[col]), np.int64, count=n)
            seen = codes >= 0
            out[rows[seen], at + codes[seen]] = 1.0
            at += len(cats)
        return out


def _as_text(column):
    """A categorical column's values as text, its gaps as None."""
    return column.astype(str).where(column.notna(), None)


def _fill_value(column, rule: dict, numeric: bool):
    """The value an ``impute`` rule puts in the column's gaps, from the training rows."""
    import pandas as pd

    how, name = rule["impute"], column.name
    if how == "constant":
        if not numeric:
            return str(rule["value"])
        try:
            return float(rule["value"])
        except (TypeError, ValueError):
            raise DataError(
                f"data.tabular.missing: {name} is numeric; its constant {rule['value']!r} is"
                " not a number"
            ) from None
    if how == "median" and not numeric:
        raise DataError(f"data.tabular.missing: {name} is categorical; impute most_frequent")
    present = column.dropna()
    if present.empty:
        raise DataError(f"column {name!r} has no value in the training rows to impute from")
    if not numeric:  # most frequent; ties to the first in sorted order, for reproducibility
        counts = present.astype(str).value_counts()
        return min(counts[counts == counts.max()].index)
    values = pd.to_numeric(present, errors="coerce").dropna()
    return float(values.median() if how in ("auto", "median") else values.mode().min())
