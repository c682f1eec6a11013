"""The reference profile: what the first data of a set to pass looked like.

It lives in ``reports/profile-<name>.json``; later data is held to it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from components.core.config import Params
from components.core.paths import Workspace
from components.core.text import TEXT_STATISTICS
from components.validate.tables import TEXT_DRIFTING, GateInput

# ---------------------------------------------------------------- reference profile


def profile(gate: GateInput) -> dict:
    """What the next batch is held to: columns and types, ranges, categories, labels, and
    the distribution of each column (images: of the per-image statistics) for the report."""
    t = gate.table
    label = gate.of.gate_label
    prof = {"kind": gate.kind, "name": gate.name, "labels": sorted(t[label].dropna().unique())}
    prof["distributions"] = distributions(gate, None)
    if gate.of.pixels:
        prof["image"] = {
            "height": int(t["height"].iloc[0]),
            "width": int(t["width"].iloc[0]),
            "channels": int(t["channels"].iloc[0]),
        }
        return prof
    if gate.of.tokenized:
        prof["label_column"], prof["text_column"] = gate.label_column, gate.text_column
        prof["text_stats"] = {c: {"mean": float(t[c].mean()), "std": float(t[c].std(ddof=0))}
                              for c in TEXT_DRIFTING}  # fmt: skip
        return prof
    prof["columns"] = [c for c in t.columns if not c.startswith("_")]
    prof["label_column"] = gate.label_column
    finite = {c: t[c][np.isfinite(t[c])] for c in gate.numeric}
    prof["numeric"] = {c: [float(v.min()), float(v.max())] for c, v in finite.items()}
    prof["numeric_stats"] = {c: {"mean": float(v.mean()), "std": float(v.std(ddof=0))}
                             for c, v in finite.items() if len(v)}  # fmt: skip
    prof["categorical"] = gate.categorical
    return prof


HIST_BINS = 20
TOP_CATEGORIES = 12
MAX_COLUMNS = 24  # the report draws at most this many columns' distributions
IMAGE_STATISTICS = ("mean", "std", "min", "max")
OTHER = "(other)"


def distributions(gate: GateInput, reference: dict | None) -> dict[str, dict]:
    """Each column's distribution as shares: numeric ones over ``HIST_BINS`` bins, categorical
    ones over their most frequent values (the rest as "(other)", gaps as "(missing)").

    With a ``reference`` profile, its bins and categories are used, so the two line up.
    """
    import pandas as pd

    t = gate.table
    ref = (reference or {}).get("distributions", {})
    if gate.of.pixels:
        columns = {c: "numeric" for c in IMAGE_STATISTICS}
    elif gate.of.tokenized:
        columns = {c: "numeric" for c in TEXT_STATISTICS}
    else:
        columns = {c: "numeric" if c in gate.numeric else "categorical"
                   for c in t.columns if not c.startswith("_")}  # fmt: skip
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
    same = prof.get("kind") == gate.kind and (
        gate.of.pixels or prof.get("label_column") == gate.label_column
    )
    return prof if same else None


def profile_path(ws: Workspace, params: Params) -> Path:
    """The reference profile of the configured data set: the first of its data to pass."""
    return ws.report(f"profile-{params.data.name}.json")
