"""The prepared splits as the later stages read them: arrays, rows and ``meta.json``.

Each split is ``{split}_x.npy`` (float32: images N x H x W or N x C x H x W on
the raw pixel scale; tables N x F, numeric columns as they are and categorical
ones one-hot) and ``{split}_y.npy`` (int64 class indices into ``meta.json``'s
``classes``). Tables also keep ``{split}_rows.parquet``, the rows as read, for
the validation gate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    from components.core.config import DataConfig

SPLITS = ("train", "val", "test")
# Tables: the rows prepare left out under a `drop` missing-value rule, kept for the gate.
DROPPED = "dropped"


@dataclass(frozen=True)
class Split:
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


def load_split(folder: Path, name: str) -> Split:
    arrays = []
    for part in ("x", "y"):
        path = Path(folder) / f"{name}_{part}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: split file missing; run the prepare stage first")
        arrays.append(np.load(path, allow_pickle=False))
    return Split(x=arrays[0], y=arrays[1])


def pixel_scale(params, meta: dict) -> float | None:
    """The pixel maximum of image data (``validate.pixel_max`` or the source's); None for tables."""
    if meta["kind"] != "image":
        return None
    return float(params.gate.pixel_max or meta["pixel_max"])


def load_rows(folder: Path, name: str):
    """A table split's rows as read from the source (tables only)."""
    import pandas as pd

    return pd.read_parquet(Path(folder) / f"{name}_rows.parquet")


def load_meta(folder: Path) -> dict:
    path = Path(folder) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run the prepare stage first")
    return json.loads(path.read_text())


def split_indices(
    y: np.ndarray, cfg: DataConfig, seed: int, held_out: int = 0
) -> dict[str, np.ndarray]:
    """Stratified (where every class allows it), seeded train/val/test indices.

    ``held_out``: the last this many samples are the test split (a test file's rows);
    train and val share the rest in the proportions the fractions give them.
    """
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    if held_out:
        rest, test = idx[: len(y) - held_out], idx[len(y) - held_out :]
        stratify = _stratify(y[rest])
    else:
        stratify = _stratify(y)
        rest, test = train_test_split(
            idx, test_size=cfg.test_fraction, stratify=stratify, random_state=seed
        )
    val_share = cfg.val_fraction / (1 - cfg.test_fraction)
    train, val = train_test_split(
        rest,
        test_size=val_share,
        stratify=None if stratify is None else y[rest],
        random_state=seed,
    )
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def _stratify(y: np.ndarray) -> np.ndarray | None:
    """The labels to stratify on, where every class has samples enough."""
    counts = np.unique(y, return_counts=True)[1]
    return y if len(counts) > 1 and counts.min() >= 3 else None
