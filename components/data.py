"""The ``prepare`` stage: turn the source data into fixed, versioned split files.

Each split is two ``.npy`` files: ``{split}_x.npy`` (float32 images, N x H x W,
raw pixel scale) and ``{split}_y.npy`` (int64 labels). The split is stratified
and seeded, so the same params always give the same files, and DVC sees no
change on a second run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.config import DataConfig

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class PreparedData:
    folder: Path
    counts: dict[str, int]
    classes: list[int]
    image_shape: tuple[int, ...]
    version: str  # content hash of the split files

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        return f"{counts} samples; data version {self.version}"


def load_source(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """The raw images and labels of the configured source."""
    if cfg.source == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images.astype(np.float32), digits.target.astype(np.int64)
    raise ValueError(f"data.source: unknown source {cfg.source!r}")  # pragma: no cover


def split_indices(y: np.ndarray, cfg: DataConfig, seed: int) -> dict[str, np.ndarray]:
    """Stratified, seeded train/val/test indices."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=cfg.test_fraction, stratify=y, random_state=seed)
    val_share = cfg.val_fraction / (1 - cfg.test_fraction)
    train, val = train_test_split(rest, test_size=val_share, stratify=y[rest], random_state=seed)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def prepare(cfg: DataConfig, seed: int, out_dir: Path) -> PreparedData:
    """Write the source's splits to ``out_dir`` and describe them in ``meta.json``."""
    x, y = load_source(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    counts = {}
    for name, idx in split_indices(y, cfg, seed).items():
        # Plain .npy, not np.savez: savez stamps its zip entries with the time, so
        # the same data would hash differently and DVC would rerun what follows.
        for part, values in (("x", x[idx]), ("y", y[idx])):
            path = out_dir / f"{name}_{part}.npy"
            np.save(path, values, allow_pickle=False)
            digest.update(path.read_bytes())
        counts[name] = int(len(idx))
    prepared = PreparedData(
        folder=out_dir,
        counts=counts,
        classes=sorted(int(c) for c in np.unique(y)),
        image_shape=tuple(int(d) for d in x.shape[1:]),
        version=digest.hexdigest()[:12],
    )
    meta = {
        "source": cfg.source,
        "counts": prepared.counts,
        "classes": prepared.classes,
        "image_shape": list(prepared.image_shape),
        "version": prepared.version,
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return prepared


def load_split(folder: Path, name: str) -> Split:
    arrays = []
    for part in ("x", "y"):
        path = Path(folder) / f"{name}_{part}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: split file missing; run the prepare stage first")
        arrays.append(np.load(path, allow_pickle=False))
    return Split(x=arrays[0], y=arrays[1])


def load_meta(folder: Path) -> dict:
    path = Path(folder) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run the prepare stage first")
    return json.loads(path.read_text())


def prepare_stage(params, ws) -> PreparedData:
    """Write the configured source's splits into the workspace."""
    return prepare(params.data, params.seed, ws.prepared)
