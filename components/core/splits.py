"""The prepared splits as the later stages read them: arrays, rows and ``meta.json``.

Each split is ``{split}_x.npy`` (images N x H x W or N x C x H x W on the raw
pixel scale: uint8 from image files, float32 for the digits and synthetic images;
tables float32 N x F, numeric columns as they are (NaN where missing) and
categorical ones one-hot) and ``{split}_y.npy`` (int64 class indices into
``meta.json``'s ``classes``; a regression's float64 values). Tables also keep
``{split}_rows.parquet``, the rows as read, for the validation gate; image folders
``{split}_files.txt``, the file of each row.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    from components.core.config import DataConfig

SPLITS = ("train", "val", "test")
# Held out from the newest accepted batches: the recent-data test slice (beside the frozen
# test split of the reference data); present only when batches joined the data.
RECENT = "recent"
# Tables: the rows prepare left out under a `drop` missing-value rule, kept for the gate.
DROPPED = "dropped"


@dataclass(frozen=True)
class Split:
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


def load_split(folder: Path, name: str) -> Split:
    """A split's arrays; ``x`` memory-mapped (copy-on-write: never written back), so a
    split larger than memory can be read a batch at a time."""
    arrays = []
    for part in ("x", "y"):
        path = Path(folder) / f"{name}_{part}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: split file missing; run the prepare stage first")
        arrays.append(np.load(path, allow_pickle=False, mmap_mode="c" if part == "x" else None))
    return Split(x=arrays[0], y=arrays[1])


class RowFile:
    """A ``.npy`` file read a block of rows at a time with plain reads.

    No memory map: what a pass over a large split reads stays in the OS's page cache,
    not in this process's resident memory, so a pass over a file larger than memory
    holds one block. ``rows[a:b]`` reads rows a to b; ``rows[idx]`` (sorted indices)
    reads the span they cover and keeps those rows; ``rows.take(idx)`` reads scattered
    rows one by one (``os.pread``), in the order given: a shuffled training batch.
    Random access through a map had kept each faulted page and its neighbours
    resident, 26 MB a batch of 64 images.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else (
                np.lib.format.read_array_header_2_0)  # fmt: skip
            shape, fortran, self.dtype = read(fh)
            self.offset = fh.tell()
        if fortran:
            raise ValueError(f"{path}: Fortran-ordered arrays are not written here")
        self.shape, self.ndim = tuple(shape), len(shape)
        self.row_items = int(np.prod(self.shape[1:]))
        self.row_bytes = self.row_items * self.dtype.itemsize
        self._fd: int | None = None  # for take(); opened by the process that reads

    def take(self, idx) -> np.ndarray:
        """Rows ``idx`` (any order) as one array, each read with ``os.pread``."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        out = bytearray(len(idx) * self.row_bytes)
        view = memoryview(out)
        for i, row in enumerate(np.asarray(idx).tolist()):
            at = i * self.row_bytes
            view[at : at + self.row_bytes] = os.pread(
                self._fd, self.row_bytes, self.offset + row * self.row_bytes)  # fmt: skip
        return np.frombuffer(out, self.dtype).reshape(len(idx), *self.shape[1:])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None}  # a DataLoader worker opens its own

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    def __len__(self) -> int:
        return self.shape[0]

    def _span(self, start: int, stop: int) -> np.ndarray:
        count = max(0, stop - start) * self.row_items
        offset = self.offset + start * self.row_bytes
        values = np.fromfile(self.path, dtype=self.dtype, count=count, offset=offset)
        return values.reshape(-1, *self.shape[1:])

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            return self._span(start, stop)[::step]
        idx = np.asarray(key)
        if idx.ndim == 0:  # one row
            row = range(len(self))[int(idx)]
            return self._span(row, row + 1)[0]
        if len(idx) == 0:
            return np.zeros((0, *self.shape[1:]), self.dtype)
        return self._span(int(idx[0]), int(idx[-1]) + 1)[idx - idx[0]]


def npy_header(fh, dtype, shape: tuple[int, ...]) -> int:
    """Write a C-ordered ``.npy`` header for an array of ``dtype`` and ``shape`` at the
    file's position; returns the position after it (the rows follow as plain bytes)."""
    np.lib.format.write_array_header_1_0(
        fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
             "shape": tuple(shape)}
    )  # fmt: skip
    return fh.tell()


def write_rows(path: Path, values, idx: np.ndarray, block: int = 8192) -> None:
    """``values[idx]`` as the ``.npy`` file ``path``, a block of rows at a time, written with
    plain writes: memory holds a block, whatever the split's size (``values``: an array or
    a ``RowFile``)."""
    with open(path, "wb") as fh:
        npy_header(fh, values.dtype, (len(idx), *values.shape[1:]))
        for start in range(0, len(idx), block):
            fh.write(np.ascontiguousarray(values[idx[start : start + block]]).tobytes())


def pixel_scale(params, meta: dict) -> float | None:
    """The pixel maximum of image data (``validate.pixel_max`` or the source's); None for tables."""
    if meta.get("pixel_max") is None:  # prepare records a pixel scale for images alone
        return None
    return float(params.gate.pixel_max or meta["pixel_max"])


def load_rows(folder: Path, name: str):
    """A table's or a text data set's split rows as read from the source."""
    import pandas as pd

    return pd.read_parquet(Path(folder) / f"{name}_rows.parquet")


def reference_texts(path: Path) -> Path:
    """Beside a text data set's drift reference sample (its token ids, ``path``): the same
    rows' texts."""
    return Path(path).with_suffix(".texts.parquet")


def split_names(meta: dict) -> list[str]:
    """The splits a prepared data set has: train, val, test, and recent where batches joined."""
    return list(meta["counts"])


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


def batch_split_indices(
    y: np.ndarray, start: int, sizes: list[int], cfg: DataConfig, seed: int
) -> dict[str, np.ndarray]:
    """Train/val/recent indices of the batch rows (``y[start:]``, batch after batch).

    ``recent_fraction`` of the newest ``recent_batches`` batches' rows (stratified where
    the classes allow) are the recent split; every other batch row goes to train or val
    in the proportion the reference split gives them.
    """
    from sklearn.model_selection import train_test_split

    b = cfg.batches
    bounds = np.cumsum([start, *sizes])
    newest = max(0, len(sizes) - b.recent_batches)
    rest = [np.arange(bounds[i], bounds[i + 1]) for i in range(newest)]
    recent = []
    for i in range(newest, len(sizes)):
        idx = np.arange(bounds[i], bounds[i + 1])
        if len(idx) < 4:  # too few to hold any out
            rest.append(idx)
            continue
        kept, held = train_test_split(idx, test_size=b.recent_fraction, stratify=_stratify(y[idx]),
                                      random_state=seed)  # fmt: skip
        rest.append(kept)
        recent.append(held)
    rest = np.concatenate(rest) if rest else np.zeros(0, np.int64)
    out = {"train": rest, "val": np.zeros(0, np.int64)}
    if len(rest) >= 4:
        val_share = cfg.val_fraction / (1 - cfg.test_fraction)
        out["train"], out["val"] = train_test_split(
            rest, test_size=val_share, stratify=_stratify(y[rest]), random_state=seed
        )
    if recent:
        out[RECENT] = np.concatenate(recent)
    return {k: np.sort(v) for k, v in out.items()}


def _stratify(y: np.ndarray) -> np.ndarray | None:
    """The labels to stratify on, where every class has samples enough (a regression's
    values: none)."""
    if np.asarray(y).dtype.kind == "f":
        return None
    counts = np.unique(y, return_counts=True)[1]
    return y if len(counts) > 1 and counts.min() >= 3 else None
