"""The configured sources (``data.source``): how each is read, its name and its kind.

``read_source`` reads the configured source, ``read_batch`` an accepted batch as its data
set was read, ``read_path`` any file or folder given to ``mloop data validate`` or ``mloop
data ingest``. A new source is one ``Source`` in ``SOURCES``; a new kind of data is a
``DataKind`` (``components/core/kinds/base.py``) beside images, tables and texts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.core.kinds import kind
from components.core.kinds.base import DataKind
from components.core.kinds.images import (
    IMAGES,
    read_arrays,
    read_digits,
    read_image_folder,
    synthetic_images,
)  # fmt: skip
from components.core.kinds.tables import TABLES, read_table, synthetic_rows, with_test_file
from components.core.kinds.texts import TEXTS, read_text_table
from components.core.rawdata import DataError, RawData, refuse_link

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    from components.core.config import DataConfig, IngestConfig, SyntheticSource


@dataclass(frozen=True)
class Source:
    """One value of ``data.source``."""

    kind: Callable[[DataConfig], DataKind]  # the kind of data it yields
    read: Callable[[DataConfig, int, Path, Path | None], RawData]  # (cfg, seed, root, images_out)
    path: Callable[[DataConfig], tuple[str, bool] | None] = lambda cfg: None  # (path, is a file)
    pixel_max: float = 255.0  # the pixel scale of its images
    batch: str = "table"  # what a new batch of it is: table, arrays (a .npz) or folder


def _tabular(cfg: DataConfig, seed: int, root: Path, images_out: Path | None) -> RawData:
    t = cfg.tabular
    raw = read_table(Path(root) / t.path, t.label, t.numeric, t.categorical, t)
    if t.test_path:
        raw = with_test_file(raw, read_table(Path(root) / t.test_path, t.label, raw.numeric,
                                             raw.categorical, t))  # fmt: skip
    return raw


SYNTHETIC = {"tabular": (TABLES, synthetic_rows), "images": (IMAGES, synthetic_images)}


def synthetic(cfg: SyntheticSource, seed: int) -> RawData:
    """A seeded task of any size (``data.synthetic``): rows or images, ``shift`` for drift."""
    return SYNTHETIC[cfg.kind][1](cfg, seed)


SOURCES: dict[str, Source] = {
    "digits": Source(kind=lambda cfg: IMAGES, read=lambda cfg, seed, root, out: read_digits(),
                     pixel_max=16.0, batch="arrays"),
    "synthetic": Source(
        kind=lambda cfg: SYNTHETIC[cfg.synthetic.kind][0],
        read=lambda cfg, seed, root, out: synthetic(cfg.synthetic, seed), batch="arrays"),
    "tabular": Source(kind=lambda cfg: TABLES, read=_tabular,
                      path=lambda cfg: (cfg.tabular.path, True)),
    "images": Source(
        kind=lambda cfg: IMAGES,
        read=lambda cfg, seed, root, out: read_image_folder(
            Path(root) / cfg.images.path, cfg.images.size, cfg.images.color, out),
        path=lambda cfg: (cfg.images.path, False), batch="folder"),
    "text": Source(
        kind=lambda cfg: TEXTS,
        read=lambda cfg, seed, root, out: read_text_table(
            Path(root) / cfg.text.path, cfg.text.text, cfg.text.label)),
}  # fmt: skip


def source_of(cfg: DataConfig) -> Source:
    return SOURCES[cfg.source]


def kind_of_source(cfg: DataConfig) -> DataKind:
    return SOURCES[cfg.source].kind(cfg)


def source_pixel_max(cfg: DataConfig) -> float:
    """The pixel scale of an image source: 16 for the built-in digits, 255 otherwise."""
    return SOURCES[cfg.source].pixel_max


def read_source(
    cfg: DataConfig, seed: int, root: Path = Path("."), images_out: Path | None = None
) -> RawData:
    """The configured source, as read; relative paths are relative to ``root`` (the workspace).
    An image folder's pixels go to the ``.npy`` file ``images_out`` (else a temporary one)."""
    return SOURCES[cfg.source].read(cfg, seed, Path(root), images_out)


def read_batch(batch, cfg: DataConfig, reference: RawData, images_out: Path) -> RawData:
    """An accepted batch (``prepare.batches.Batch``), read as its reference data was, less
    the rows its gate left out (``batch.rejected``)."""
    raw = kind(reference.kind).read_batch(batch, cfg, reference, images_out)
    if batch.rejected and raw.frame is not None:
        keep = np.ones(len(raw.frame), bool)
        keep[list(batch.rejected)] = False
        raw.frame = raw.frame[keep].reset_index(drop=True)
        raw.labels = np.asarray(raw.labels)[keep]
    return raw


def read_path(
    path: Path, cfg: DataConfig, label: str | None = None, limits: IngestConfig | None = None
) -> RawData:
    """Any file or folder, for ``mloop validate --data`` and ``mloop ingest``: a folder of
    images, a table (of texts, for a text data set), or a ``.npz`` of image arrays.
    ``limits``: the caps on a batch's size (``ingest``)."""
    path = Path(path)
    refuse_link(path)
    tables = limits.max_table_bytes if limits else None
    if path.is_dir():
        size, color = (cfg.images.size, cfg.images.color) if cfg.images else ((32, 32), "grayscale")
        return read_image_folder(path, size, color)
    if not path.exists():
        raise DataError("no such file or folder", path)
    if not path.is_file():  # a device, a pipe, a socket: never read, never copied
        raise DataError("not a regular file or folder", path)
    if path.suffix.lower() == ".npz":
        return read_arrays(path, source_pixel_max(cfg), limits.max_npz_bytes if limits else None)
    if kind_of_source(cfg) is TEXTS and cfg.text is not None:  # a batch of the data set's texts
        return read_text_table(path, cfg.text.text, label or cfg.text.label, tables)
    label = label or (cfg.tabular.label if cfg.tabular else None)
    if label is None:
        raise DataError("a table needs its label column: pass --label or set data.tabular", path)
    t = cfg.tabular
    declared = t is not None and t.label == label  # a batch of the configured data set
    if not declared:
        return read_table(path, label, max_bytes=tables)
    return read_table(path, label, t.numeric, t.categorical, t, max_bytes=tables)
