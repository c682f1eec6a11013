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
