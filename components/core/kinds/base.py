"""The data-kind protocol: what differs between images, tables and texts, asked of one object.

A stage asks the kind of its data (``components.core.kinds.kind(name)`` for a prepared data set's
``meta["kind"]`` or a ``RawData.kind``; ``components.core.kinds.source_of(cfg)`` for params) in
place of comparing its name. The kinds are ``IMAGES``, ``TABLES`` and ``TEXTS`` in
``components/core/kinds/{images,tables,texts}.py``; a source (``components/core/kinds/sources.py``)
says how one configured source is read and which kind it yields.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from components.core.config import DataConfig
    from components.core.rawdata import RawData


class DataKind:
    name: ClassVar[str]  # what meta.json, RawData and the gate record: image, tabular, text
    noun: ClassVar[str]  # what one sample is called in messages: images, rows, texts
    route: ClassVar[str]  # the service's endpoint that takes it
    batch_format: ClassVar[str]  # how an accepted batch of it is stored: arrays or table
    row_table: ClassVar[bool]  # its samples are the rows of a table (a frame to gate by row)
    family: ClassVar[str]  # the model family train.model: auto trains on it
    baseline: ClassVar[str | None] = None  # the baseline train.baseline: auto fits beside it
    # What it is made of, for the stages that treat it so: pixels (scaled, decoded, drawn
    # as saliency), texts read through a tokenizer that travels with the model, or rows of
    # feature columns encoded for the net
    pixels: ClassVar[bool] = False
    tokenized: ClassVar[bool] = False
    features: ClassVar[bool] = False
    gate_label: ClassVar[str] = "_label"  # the label's column in the gate's table of it
    report_note: ClassVar[str] = ""  # what the gate report's distributions show of it
    # The five statistics the inference log keeps of each sample, in order: the kind's
    # schema there (``core.inference_log.read`` names the log's slots so), and of them
    # the descriptors the production monitor compares with the training data's
    logged: ClassVar[tuple[str, ...]]
    drifting: ClassVar[tuple[str, ...]]

    def read_batch(self, batch, cfg: DataConfig, reference: RawData, images_out: Path) -> RawData:
        """An accepted batch's data, read as the reference data of this kind was."""
        raise NotImplementedError

    def body_limit(self, meta: dict, max_file_bytes: int) -> int:
        """The default limit of a request's body for a model of this kind (``meta``: what
        the package stage recorded): the largest legal batch of its inputs, in JSON."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<data kind {self.name}>"


# ---------------------------------------------------------------- what a request may carry

MAX_BATCH = 256  # inputs a request may carry
# Bytes per number in the largest legal batch ("255.12345678901234, ") and per request
# besides: the default body limit (MLOOP_MAX_BODY_BYTES overrides it).
BYTES_PER_VALUE = 24
BODY_OVERHEAD = 64 * 1024


class Refused(ValueError):
    """A request's inputs the kind does not take (the service answers 400 with the reason)."""


class TooLarge(Refused):
    """More than a request may carry (the service answers 413)."""


def check_batch(n: int) -> None:
    if n == 0 or n > MAX_BATCH:
        raise Refused(f"send between 1 and {MAX_BATCH} inputs, got {n}")


def array_statistics(x: np.ndarray) -> np.ndarray:
    """Per-sample mean, std, min, max and ink (share of non-zero values): N x 5, what the
    inference log keeps of an image or an encoded row (``IMAGES.logged``, ``TABLES.logged``)."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    return np.stack(
        [flat.mean(1), flat.std(1), flat.min(1), flat.max(1), (flat > 0).mean(1)], axis=1
    )
