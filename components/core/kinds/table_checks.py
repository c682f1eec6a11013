"""The table kind's part of the data gate: the rows as read (column types, gaps, ranges,
labels), plus ``_split``, ``_label``, ``_finite`` and ``_digest`` (duplicates) per row."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.core.kinds.base import DataKind
from components.core.kinds.gate import (
    GateInput,
    gate_of,
    mean_band,
    split_column,
    widen,
)

if TYPE_CHECKING:
    from components.core.config import ValidateConfig
    from components.core.rawdata import RawData

NUMERIC_TYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float16", "float32", "float64"]  # fmt: skip
HELPERS = ["_split", "_label", "_finite", "_digest"]  # the gate's own columns of a row


def row_table(frame, label: str, numeric: list[str], splits=None):
    """A table's rows plus ``_split``, ``_label`` (as text), ``_finite`` and ``_digest``."""
    import pandas as pd

    table = frame.copy()
    table["_split"] = splits if splits is not None else "all"
    table["_label"] = frame[label].astype(str).where(frame[label].notna(), None)
    present = [c for c in numeric if c in frame.columns]
    values = np.column_stack(
        [pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float64) for c in present]
    ) if present else np.zeros((len(frame), 0))  # fmt: skip
    table["_finite"] = ~np.isinf(values).any(axis=1)
    encoded = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    table["_digest"] = encoded.astype(str)
    return table


def looks_numeric(column) -> bool:
    """A text column whose values are nearly all numbers, maybe with thousands separators
    ("51,234"): a numeric column with faults, or one that needs data.tabular.thousands."""
    import pandas as pd

    values = column.dropna().astype(str).str.replace(r"(?<=\d)[,_ '](?=\d{3})", "", regex=True)
    return len(values) > 0 and pd.to_numeric(values, errors="coerce").notna().mean() >= 0.9


def numeric_columns(gate: GateInput, reference: dict | None) -> set[str]:
    """Columns held to numbers: the reference's (or the read's), plus near-numeric text ones."""
    t = gate.table
    numeric = set(reference["numeric"]) if reference else set(gate.numeric)
    return numeric | {c for c in gate.categorical if c in t.columns and looks_numeric(t[c])}


def column_bounds(
    col: str, cfg: ValidateConfig, reference: dict | None
) -> tuple[float, float] | None:
    """A numeric column's allowed range: explicit in params, else the widened profile range."""
    if col in cfg.ranges:
        return cfg.ranges[col]
    if reference and col in reference["numeric"]:
        return widen(*reference["numeric"][col], cfg.range_margin)
    return None


def label_bounds(label: str | None, cfg: ValidateConfig, reference: dict | None):
    """A regression label's allowed range: ``validate.ranges`` for it, else the range it ever
    had (the reference profile's) widened by ``validate.range_margin``; None: unknown yet."""
    if label in cfg.ranges:
        return cfg.ranges[label]
    known = (reference or {}).get("label_range")
    return widen(*known, cfg.range_margin) if known else None


def _features(t) -> list[str]:
    return [c for c in t.columns if not c.startswith("_")]


class TableChecks(DataKind):
    def gate_table(self, raw: RawData, splits=None):
        return row_table(raw.frame, raw.label_column, raw.numeric, splits)

    def prepared_gate(self, prepared: Path, meta: dict) -> GateInput:
        """The prepared rows, with those a ``drop`` rule left out (in no split)."""
        import pandas as pd

        from components.core.rawdata import RawData
        from components.core.splits import DROPPED, load_rows, split_names

        left_out = (prepared / f"{DROPPED}_rows.parquet").is_file()
        names = [*split_names(meta), DROPPED] if left_out else split_names(meta)
        frames = [load_rows(prepared, s).drop(columns="_reason", errors="ignore") for s in names]
        schema = meta["schema"]
        raw = RawData(
            kind=self.name, labels=np.asarray([]), frame=pd.concat(frames, ignore_index=True),
            label_column=schema["label"], numeric=schema["numeric"],
            categorical=list(schema["categorical"]), missing=schema.get("missing", {}),
            origin=Path(meta["origin"]) if meta["origin"] else None,
        )  # fmt: skip
        gate = gate_of(self, raw, meta["name"], split_column(names, frames))
        gate.task = meta.get("task", "classification")
        gate.leakage = [f["message"] for f in meta.get("leakage") or []]
        return gate

    def expectations(self, gate: GateInput, cfg: ValidateConfig, reference: dict | None):
        import great_expectations as gx

        E = gx.expectations
        t = gate.table
        features = [c for c in _features(t) if c != gate.label_column]
        expected = reference["columns"] if reference else [*features, gate.label_column]
        numeric = numeric_columns(gate, reference)
        exps = [
            E.ExpectTableRowCountToBeBetween(min_value=cfg.min_rows),
            E.ExpectColumnValuesToNotBeNull(column="_label"),
            E.ExpectColumnUniqueValueCountToBeBetween(column="_label", min_value=2),
            E.ExpectColumnValuesToBeInSet(column="_finite", value_set=[True]),
            E.ExpectColumnProportionOfUniqueValuesToBeBetween(
                column="_digest", min_value=1.0 - cfg.max_duplicate_share
            ),
        ]
        exact = cfg.extra_columns == "fail"
        exps.append(E.ExpectTableColumnsToMatchSet(column_set=expected + HELPERS,
                                                   exact_match=exact))  # fmt: skip
        for col in (c for c in expected if c in t.columns and c != gate.label_column):
            may_miss = gate.may_miss(col)  # a declared share of empty cells: GX's `mostly`
            if may_miss:
                exps.append(E.ExpectColumnValuesToNotBeNull(column=col, mostly=1.0 - may_miss))
            else:
                exps.append(E.ExpectColumnValuesToNotBeNull(column=col))
            if col not in numeric:
                continue
            exps.append(E.ExpectColumnValuesToBeInTypeList(column=col, type_list=NUMERIC_TYPES))
            bounds = column_bounds(col, cfg, reference)
            if bounds:  # a distribution check: mostly within range (single rows: row_policy)
                low, high = bounds
                exps.append(E.ExpectColumnValuesToBeBetween(
                    column=col, min_value=low, max_value=high, mostly=cfg.range_mostly
                ))  # fmt: skip
            stat = (reference or {}).get("numeric_stats", {}).get(col)
            if stat and len(t) and col not in gate.categorical:
                low, high = mean_band(stat, len(t), cfg.max_mean_shift * stat["std"])
                exps.append(E.ExpectColumnMeanToBeBetween(column=col, min_value=low,
                                                          max_value=high))  # fmt: skip
        return exps

    def gate_warnings(self, gate: GateInput, cfg: ValidateConfig, reference: dict | None):
        if not reference or cfg.extra_columns != "warn":
            return []
        known = {*reference["columns"], *HELPERS}
        extra = sorted(set(gate.table.columns) - known)
        return [f"unexpected extra column {c!r} (validate.extra_columns: warn)" for c in extra]

    def row_faults(self, gate: GateInput, cfg: ValidateConfig, reference: dict | None,
                   faults_only: bool) -> list:  # fmt: skip
        import pandas as pd

        t = gate.table
        faults = [(~t["_finite"], "infinite value")]
        if gate.regression(reference):  # a number to predict: a label that is none is a fault
            value = pd.to_numeric(t["_label"], errors="coerce").astype(float)
            faults.append((t["_label"].notna() & ~np.isfinite(value), "label not a finite number"))
            bounds = label_bounds(gate.label_column, cfg, reference)
            if bounds:  # far outside what the label ever was (a labeller's 1e308)
                faults.append(((value < bounds[0]) | (value > bounds[1]), "label out of range"))
        if not faults_only:
            faults.append((t["_digest"].duplicated(), "duplicate row"))
        numeric = numeric_columns(gate, reference)
        for col in _features(t):
            if not gate.may_miss(col):  # a rule that drops or imputes makes a gap no fault
                faults.append((t[col].isna(), f"{col} missing"))
            if col in numeric:
                parsed = pd.to_numeric(t[col], errors="coerce")
                faults.append((t[col].notna() & parsed.isna(), f"{col} not numeric"))
                bounds = column_bounds(col, cfg, reference)
                if bounds:
                    faults.append(((parsed < bounds[0]) | (parsed > bounds[1]),
                                   f"{col} out of range"))  # fmt: skip
        return faults

    def as_given(self, gate: GateInput, mask):
        return gate.table[mask].drop(columns=HELPERS, errors="ignore")

    def profile_of(self, gate: GateInput) -> dict:
        t = gate.table
        finite = {c: t[c][np.isfinite(t[c])] for c in gate.numeric}
        return {
            "columns": _features(t),
            "label_column": gate.label_column,
            "numeric": {c: [float(v.min()), float(v.max())] for c, v in finite.items()},
            "numeric_stats": {
                c: {"mean": float(v.mean()), "std": float(v.std(ddof=0))}
                for c, v in finite.items()
                if len(v)
            },  # fmt: skip
            "categorical": gate.categorical,
            **({"label_range": label_range(t)} if gate.regression(None) else {}),
        }

    def described(self, gate: GateInput) -> dict[str, str]:
        return {c: "numeric" if c in gate.numeric else "categorical"
                for c in _features(gate.table)}  # fmt: skip


def label_range(table) -> list[float]:
    """A regression's label, its smallest and largest value (the gate's ``_label`` as text)."""
    import pandas as pd

    value = pd.to_numeric(table["_label"], errors="coerce").astype(float)
    value = value[np.isfinite(value)]
    return [float(value.min()), float(value.max())] if len(value) else [0.0, 0.0]
