"""The ``prepare`` stage: turn the configured source into fixed, versioned split files.

The split is stratified and seeded, and the files (``splits.py``) are written
byte-for-byte reproducibly, so DVC sees no change on a second run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.prepare.sources import DataError, RawData, read_source
from components.prepare.splits import split_indices
from components.validate.quarantine import quarantine_unreadable

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    from components.core.config import DataConfig


@dataclass(frozen=True)
class PreparedData:
    folder: Path
    kind: str
    counts: dict[str, int]
    classes: list
    input_shape: tuple[int, ...]
    version: str  # content hash of the split files
    rejected: int

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        rejected = f"; {self.rejected} files rejected at read" if self.rejected else ""
        return f"{self.kind} data: {counts} samples; data version {self.version}{rejected}"


def class_names(labels: np.ndarray) -> list:
    """Sorted distinct labels: ints stay ints (the digits), anything else strings."""
    values = np.unique(labels)
    if np.issubdtype(values.dtype, np.integer):
        return [int(v) for v in values]
    return [str(v) for v in values]


def encode_table(raw: RawData, train_idx: np.ndarray) -> tuple[np.ndarray, dict]:
    """Numeric columns as float32; categorical ones one-hot over the train split's categories."""
    import pandas as pd

    frame = raw.frame
    blocks, names = [], []
    for col in raw.numeric:
        blocks.append(pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float32)[:, None])
        names.append(col)
    categories = {}
    for col in raw.categorical:
        values = frame[col].astype(str)
        cats = sorted(values.iloc[train_idx].unique().tolist())
        categories[col] = cats
        codes = pd.Categorical(values, categories=cats).codes
        onehot = np.zeros((len(frame), len(cats)), np.float32)
        onehot[codes >= 0, codes[codes >= 0]] = 1.0
        blocks.append(onehot)
        names += [f"{col}={c}" for c in cats]
    x = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(frame), 0), np.float32)
    schema = {
        "label": raw.label_column,
        "numeric": raw.numeric,
        "categorical": categories,
        "encoded": names,
    }
    return x, schema


def prepare(
    cfg: DataConfig,
    seed: int,
    out_dir: Path,
    quarantine: Path | None = None,
    root: Path = Path("."),
):
    """Read the source, split it, write the split files and ``meta.json``."""
    try:
        raw = read_source(cfg, seed, root)
    except DataError as err:
        if quarantine is not None:
            err.quarantine = quarantine_unreadable(err, quarantine)
        raise
    classes = class_names(raw.labels)
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index[c] for c in raw.labels.tolist()], dtype=np.int64)
    splits = split_indices(y, cfg, seed)
    schema = None
    if raw.kind == "tabular":
        x, schema = encode_table(raw, splits["train"])
    else:
        x = raw.images

    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*_rows.parquet"):
        stale.unlink()
    digest = hashlib.sha256()
    counts = {}
    for name, idx in splits.items():
        # Plain .npy, not np.savez: savez stamps its zip entries with the time, so
        # the same data would hash differently and DVC would rerun what follows.
        for part, values in (("x", x[idx]), ("y", y[idx])):
            path = out_dir / f"{name}_{part}.npy"
            np.save(path, np.ascontiguousarray(values), allow_pickle=False)
            digest.update(path.read_bytes())
        if raw.kind == "tabular":
            rows = raw.frame.iloc[idx].reset_index(drop=True)
            rows.to_parquet(out_dir / f"{name}_rows.parquet", index=False)
        counts[name] = int(len(idx))
    prepared = PreparedData(
        folder=out_dir,
        kind=raw.kind,
        counts=counts,
        classes=classes,
        input_shape=tuple(int(d) for d in x.shape[1:]),
        version=digest.hexdigest()[:12],
        rejected=len(raw.rejected),
    )
    meta = {
        "source": cfg.source,
        "name": cfg.name,
        "kind": raw.kind,
        "counts": counts,
        "classes": classes,
        "input_shape": list(prepared.input_shape),
        "pixel_max": raw.pixel_max if raw.kind == "image" else None,
        "schema": schema,
        "rejected": [{"file": f, "reason": r} for f, r in raw.rejected],
        "origin": str(raw.origin) if raw.origin else None,
        "version": prepared.version,
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return prepared


def prepare_stage(params, ws) -> PreparedData:
    """Write the configured source's splits into the workspace."""
    return prepare(params.data, params.seed, ws.prepared, ws.quarantine, ws.root)
