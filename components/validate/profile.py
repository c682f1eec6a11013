"""The reference profile: what the first data of a set to pass looked like.

It lives in ``reports/profile-<name>.json``; later data is held to it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from components.core.config import Params
from components.core.kinds.gate import GateInput
from components.core.paths import Workspace

# ---------------------------------------------------------------- reference profile


def profile(gate: GateInput) -> dict:
    """What the next batch is held to: columns and types, ranges, categories, labels, and
    the distribution of each column (images: of the per-image statistics) for the report;
    what besides is the data kind's (``DataKind.profile_of``)."""
    t = gate.table
    regression = gate.regression(None)  # a number to predict: no set of labels to hold to
    labels = [] if regression else sorted(t[gate.of.gate_label].dropna().unique())
    prof = {"kind": gate.kind, "name": gate.name, "labels": labels,
            "task": gate.task or "classification"}  # fmt: skip
    prof["distributions"] = distributions(gate, None)
    return {**prof, **gate.of.profile_of(gate)}


HIST_BINS = 20
TOP_CATEGORIES = 12
MAX_COLUMNS = 24  # the report draws at most this many columns' distributions
OTHER = "(other)"


def distributions(gate: GateInput, reference: dict | None) -> dict[str, dict]:
    """Each column's distribution as shares: numeric ones over ``HIST_BINS`` bins, categorical
    ones over their most frequent values (the rest as "(other)", gaps as "(missing)").

    With a ``reference`` profile, its bins and categories are used, so the two line up.
    """
    import pandas as pd

    t = gate.table
    ref = (reference or {}).get("distributions", {})
    columns = gate.of.described(gate)
    out = {}
    for col, type_ in list(columns.items())[:MAX_COLUMNS]:
        values = t[col]
        if type_ == "numeric":
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(np.float64, na_value=np.nan)
            finite = numbers[np.isfinite(numbers)]
            edges = ref.get(col, {}).get("edges")
            if edges is None:
                low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0, 1)
                edges = np.linspace(low, high if high > low else low + 1, HIST_BINS + 1).tolist()
            counts = np.histogram(np.clip(finite, edges[0], edges[-1]), bins=edges)[0]
            out[col] = {"kind": type_, "edges": [float(e) for e in edges],
                        "shares": (counts / max(len(numbers), 1)).tolist(),
                        "missing": float(1 - len(finite) / max(len(numbers), 1))}  # fmt: skip
        else:
            text = values.astype(str).where(values.notna(), "(missing)")
            shares = text.value_counts(normalize=True)
            names = [v for v in ref.get(col, {}).get("values", []) if v != OTHER]
            names = names or [str(v) for v in shares.index[:TOP_CATEGORIES]]
            kept = [float(shares.get(v, 0.0)) for v in names]
            out[col] = {"kind": type_, "values": names + [OTHER],
                        "shares": kept + [max(0.0, 1.0 - sum(kept))]}  # fmt: skip
    return out


def load_profile(path: Path, gate: GateInput) -> dict | None:
    if not path.is_file():
        return None
    prof = json.loads(path.read_text())
    same = prof.get("kind") == gate.kind and gate.of.same_profile(prof, gate)
    if gate.task and prof.get("task", "classification") != gate.task:
        same = False  # the label is read as another task now: a profile of its own
    return prof if same else None


def profile_path(ws: Workspace, params: Params) -> Path:
    """The reference profile of the configured data set: the first of its data to pass."""
    return ws.report(f"profile-{params.data.name}.json")
