"""The reference profile: what the first data of a set to pass looked like.

It lives in ``reports/profile-<name>.json``; later data is held to it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from components.core.config import Params
from components.core.paths import Workspace
from components.validate.tables import GateInput

# ---------------------------------------------------------------- reference profile


def profile(gate: GateInput) -> dict:
    """What the next batch is held to: columns and types, ranges, categories, labels."""
    t = gate.table
    label = "label" if gate.kind == "image" else "_label"
    prof = {"kind": gate.kind, "name": gate.name, "labels": sorted(t[label].dropna().unique())}
    if gate.kind == "image":
        prof["image"] = {
            "height": int(t["height"].iloc[0]),
            "width": int(t["width"].iloc[0]),
            "channels": int(t["channels"].iloc[0]),
        }
        return prof
    prof["columns"] = [c for c in t.columns if not c.startswith("_")]
    prof["label_column"] = gate.label_column
    finite = {c: t[c][np.isfinite(t[c])] for c in gate.numeric}
    prof["numeric"] = {c: [float(v.min()), float(v.max())] for c, v in finite.items()}
    prof["categorical"] = gate.categorical
    return prof


def load_profile(path: Path, gate: GateInput) -> dict | None:
    if not path.is_file():
        return None
    prof = json.loads(path.read_text())
    same = prof.get("kind") == gate.kind and (
        gate.kind == "image" or prof.get("label_column") == gate.label_column
    )
    return prof if same else None


def profile_path(ws: Workspace, params: Params) -> Path:
    """The reference profile of the configured data set: the first of its data to pass."""
    return ws.report(f"profile-{params.data.name}.json")
