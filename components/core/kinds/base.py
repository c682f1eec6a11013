"""The data-kind protocol: what differs between images, tables and texts, asked of one object.

A stage asks the kind of its data (``components.core.kinds.kind(name)`` for a prepared data set's
``meta["kind"]`` or a ``RawData.kind``; ``components.core.kinds.source_of(cfg)`` for params) in
place of comparing its name. The kinds are ``IMAGES``, ``TABLES`` and ``TEXTS`` in
``components/core/kinds/{images,tables,texts}.py``; a source (``components/core/kinds/sources.py``)
says how one configured source is read and which kind it yields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from components.core.config import DataConfig, MonitorConfig, Params, ValidateConfig
    from components.core.rawdata import RawData


class DataKind:
    name: ClassVar[str]  # what meta.json, RawData and the gate record: image, tabular, text
    noun: ClassVar[str]  # what one sample is called in messages: images, rows, texts
    route: ClassVar[str]  # the service's endpoint that takes it
    batch_format: ClassVar[str]  # how an accepted batch of it is stored: arrays or table
    row_table: ClassVar[bool]  # its samples are the rows of a table (a frame to gate by row)
    family: ClassVar[str]  # the model family train.model: auto trains on it
    baselines: ClassVar[tuple[str, ...]] = ()  # the baselines train.baseline: auto fits beside it
    # What it is made of, for the stages that treat it so: pixels (scaled, decoded, drawn
    # as saliency), texts read through a tokenizer that travels with the model, or rows of
    # feature columns encoded for the net
    pixels: ClassVar[bool] = False
    tokenized: ClassVar[bool] = False
    features: ClassVar[bool] = False
    gate_label: ClassVar[str] = "_label"  # the label's column in the gate's table of it
    gate_split: ClassVar[str] = "_split"  # ... and each row's split
    report_note: ClassVar[str] = ""  # what the gate report's distributions show of it
    # The five statistics the inference log keeps of each sample, in order: the kind's
    # schema there (``core.inference_log.read`` names the log's slots so), and of them
    # the descriptors the production monitor compares with the training data's
    logged: ClassVar[tuple[str, ...]]
    drifting: ClassVar[tuple[str, ...]]

    def read_batch(self, batch, cfg: DataConfig, reference: RawData, images_out: Path) -> RawData:
        """An accepted batch's data, read as the reference data of this kind was."""
        raise NotImplementedError

    def encode(self, raw: RawData, train_idx: np.ndarray, cfg: DataConfig, out_dir: Path,
               previous: dict | None, given=None) -> tuple[np.ndarray, dict]:  # fmt: skip
        """The model's input for every sample of ``raw``, by an encoder fitted on the rows
        ``train_idx`` only, and what ``meta.json`` keeps of that encoder for the service
        (``previous``: the last meta.json, whose encoder may be reused; ``given``: the
        encoder a pretrained model brings, as texts' tokenizer file and input limit)."""
        raise NotImplementedError

    # ------------------------------------------------------------ its part of the data gate
    # (``core/kinds/{image,table,text}_checks.py``; ``GateInput`` is below)

    def gate_table(self, raw: RawData, splits=None):
        """The table the gate checks of ``raw``: one row per sample (``splits``: each
        sample's split name, else "all")."""
        raise NotImplementedError

    def prepared_gate(self, prepared: Path, meta: dict) -> GateInput:
        """The prepared splits in folder ``prepared``, as the gate sees them."""
        raise NotImplementedError

    def expectations(self, gate: GateInput, cfg: ValidateConfig, reference: dict | None):
        """Its Great Expectations suite, from ``validate:`` and the reference profile."""
        raise NotImplementedError

    def gate_warnings(self, gate: GateInput, cfg: ValidateConfig, reference: dict | None):
        """What the gate reports without failing."""
        return []

    def row_faults(self, gate: GateInput, cfg: ValidateConfig, reference: dict | None,
                   faults_only: bool) -> list:  # fmt: skip
        """``(mask, reason)`` for each rule one row can break (``faults_only``: only what is
        wrong with a row by itself, not what it shares with others, as duplicates)."""
        raise NotImplementedError

    def as_given(self, gate: GateInput, mask):
        """The rows ``mask`` marks, in the columns they came with (for quarantine)."""
        raise NotImplementedError(f"{self.noun} are not rows of a table")

    def profile_of(self, gate: GateInput) -> dict:
        """Its part of the reference profile: what the next batch is held to."""
        raise NotImplementedError

    def same_profile(self, profile: dict, gate: GateInput) -> bool:
        """Whether the reference ``profile`` (of this kind) is one ``gate`` is held to."""
        return profile.get("label_column") == gate.label_column

    def described(self, gate: GateInput) -> dict[str, str]:
        """The columns whose distributions the report draws: numeric or categorical."""
        raise NotImplementedError

    def traffic(self, prepared: Path, meta: dict, fault: str, params: Params):
        """The test split's samples (in ``prepared``), changed by ``fault`` (``FAULTS``), and
        their labels: what ``mloop traffic`` sends the service."""
        raise ValueError(f"traffic sends images or texts; this workspace's model reads {self.noun}")

    def body_limit(self, meta: dict, max_file_bytes: int) -> int:
        """The default limit of a request's body for a model of this kind (``meta``: what
        the package stage recorded): the largest legal batch of its inputs, in JSON."""
        raise NotImplementedError

    def as_served(self, x: np.ndarray, meta: dict) -> np.ndarray:
        """A prepared batch as the service gives it to the model (``meta``: meta.json), so
        that compression times the variants on what they will answer."""
        return x

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


# ---------------------------------------------------------------- simulated changes

# How a kind's samples can be changed, for the drift self-test and for traffic: unchanged,
# noisy, shifted, and a change of domain for demonstrations and the learning closed-loop
# test (inverted images: light strokes on dark become dark on light; mirrored table
# columns; texts with their case swapped)
FAULTS = ("clean", "noise", "shift", "invert")


def drifted(
    batch: np.ndarray,
    fault: str,
    cfg: MonitorConfig,  # noise_std, intensity_shift
    pixel_max: float | None,
    rng: np.random.Generator,
    numeric: int | None = None,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """``batch`` unchanged, noisy, shifted or inverted.

    Images (``pixel_max`` given) move in pixel units and stay in range; tables
    move their first ``numeric`` columns in units of each column's std (in
    ``reference``, ``batch`` itself by default). ``invert``: images become
    ``pixel_max - x``; table columns are mirrored around the reference mean.
    """
    if fault not in FAULTS:
        raise ValueError(f"unknown batch kind {fault!r}; expected one of {FAULTS}")
    batch = batch.astype(np.float64)
    cols = slice(None) if numeric is None else slice(0, numeric)
    reference = batch if reference is None else reference
    unit = 1.0 if pixel_max is not None else np.nanstd(reference[:, cols], axis=0)
    part = batch[:, cols]
    if fault == "noise":
        part += rng.normal(0.0, 1.0, size=part.shape) * cfg.noise_std * unit
    elif fault == "shift":
        part += cfg.intensity_shift * unit
    elif fault == "invert":
        center = pixel_max / 2 if pixel_max is not None else np.nanmean(reference[:, cols], axis=0)
        part[:] = 2 * center - part
    batch[:, cols] = part
    if pixel_max is not None:
        batch = np.clip(batch, 0.0, pixel_max)
    return batch.astype(np.float32)


def array_statistics(x: np.ndarray) -> np.ndarray:
    """Per-sample mean, std, min, max and ink (share of non-zero values): N x 5, what the
    inference log keeps of an image or an encoded row (``IMAGES.logged``, ``TABLES.logged``)."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    return np.stack(
        [flat.mean(1), flat.std(1), flat.min(1), flat.max(1), (flat > 0).mean(1)], axis=1
    )


@dataclass
class GateInput:
    """What the gate checks: one table, plus what is known about it."""

    of: DataKind  # the data kind it holds (``components.core.kinds``)
    table: object  # pandas.DataFrame
    label_column: str | None = None
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    pixel_max: float = 255.0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # files refused at read
    files: list[str] = field(default_factory=list)
    origin: Path | None = None
    name: str = "data"
    missing: dict[str, dict] = field(default_factory=dict)  # tables: each column's rule
    text_column: str | None = None  # texts: the column of the texts
    conflicts: str = "fail"  # data.text.conflicts: the same text under two labels fails
    task: str | None = None  # the prepared data's (None: a batch: the reference profile's)
    leakage: list[str] = field(default_factory=list)  # prepare's probable leakage, said
    # A batch's rows that are already in the data (a pandas bool Series on the table's
    # index: ``already_in``); None where nothing was compared
    known: object = None

    def regression(self, reference: dict | None) -> bool:
        """Whether the label is a number (no classes to count or allow)."""
        return (self.task or (reference or {}).get("task")) == "regression"

    @property
    def kind(self) -> str:
        """The data kind's name: image, tabular, text."""
        return self.of.name

    def may_miss(self, column: str) -> float:
        """The share of empty cells the column may hold: 0 unless its rule drops or imputes."""
        rule = self.missing.get(column)
        return 0.0 if rule is None or rule["policy"] == "fail" else float(rule["max_share"])
