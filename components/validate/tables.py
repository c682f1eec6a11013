"""What the gate checks: the data as one table, a row per sample, built by its data kind
(``DataKind.gate_table``, ``components/core/kinds/*_checks.py``), and the class table (a
regression's: its labels as numbers)."""

from __future__ import annotations

from components.core.config import Params
from components.core.kinds import kind as data_kind
from components.core.kinds.gate import GateInput, gate_of
from components.core.paths import Workspace
from components.core.rawdata import RawData
from components.core.splits import load_meta


def conflict_policy(params: Params) -> str:
    """data.text.conflicts for texts; tables settle theirs in prepare (or keep them)."""
    return params.data.text.conflicts if params.data.text is not None else "fail"


def gate_input(raw: RawData, name: str, splits=None, conflicts: str = "fail") -> GateInput:
    """What the gate checks of ``raw`` (``components.core.kinds.gate.gate_of``)."""
    return gate_of(data_kind(raw.kind), raw, name, splits, conflicts)


def prepared_gate_input(ws: Workspace) -> GateInput:
    """The prepared splits, as the gate sees them."""
    meta = load_meta(ws.prepared)
    return data_kind(meta["kind"]).prepared_gate(ws.prepared, meta)


def class_table(table, label_column: str, split_column: str, classes: list[str]):
    """Count and share of each class in each split; a class absent from a split counts 0."""
    import pandas as pd

    labels = sorted(set(classes) | set(table[label_column].dropna().unique().tolist()))
    grid = pd.MultiIndex.from_product([sorted(table[split_column].unique()), labels])
    counts = table.groupby([split_column, label_column]).size().reindex(grid, fill_value=0)
    counts = counts.rename("count").rename_axis(["split", "label"]).reset_index()
    counts["share"] = counts["count"] / counts.groupby("split")["count"].transform("sum")
    return counts


def label_table(table, label_column: str):
    """A regression's labels as numbers (``value``: NaN where one is no finite number)."""
    import numpy as np
    import pandas as pd

    value = pd.to_numeric(table[label_column], errors="coerce").astype(float)
    return pd.DataFrame({"value": value.where(np.isfinite(value))})
