"""Small real data for the tests: a table with a label, a folder of class folders of images."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def make_table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = rng.choice(["a", "b", "c"], size=n)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, size=n),
            "income": np.round(rng.normal(50, 15, size=n) + (label == "b") * 20, 3),
            "plan": rng.choice(["basic", "pro", "team"], size=n),
            "y": label,
        }
    )


def make_images(root: Path, per_class: int = 40, size: int = 12, mode: str = "L") -> Path:
    rng = np.random.default_rng(0)
    for k, name in enumerate(["circle", "square", "stripe"]):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = np.full((size, size), 40 * k, np.uint8) + rng.integers(0, 60, (size, size))
            pixels = base.astype(np.uint8)
            if mode == "RGB":
                pixels = np.stack([pixels] * 3, axis=-1)
            Image.fromarray(pixels, mode=mode).save(root / name / f"{i:03d}.png")
    return root


def checksums(path: Path) -> dict[str, str]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def make_jpegs(root: Path, classes: int = 10, per_class: int = 40, size: int = 16) -> Path:
    """``root/c<k>/<i>.jpg``: RGB JPEGs, each class a colour pattern under noise."""
    rng = np.random.default_rng(0)
    patterns = rng.uniform(30, 220, (classes, size, size, 3))
    for k in range(classes):
        (root / f"c{k}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(patterns[k] + rng.normal(0, 40, (size, size, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8), "RGB").save(root / f"c{k}" / f"{i:03d}.jpg")
    return root
