"""The data sections of ``params.yaml``: sources, batches, ingest and the gate.

``components.core.config`` holds the rest and the loading; it re-exports these.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Literal

from pydantic import Field, model_validator

from components.core.sections import Section as _Section


class MissingRule(_Section):
    """What a column's empty cells mean: ``fail`` the data, ``drop`` the row, or ``impute``."""

    policy: Literal["fail", "drop", "impute"] = "fail"  # see the class docstring
    # auto: the median of a numeric column, the most frequent value of a categorical one
    impute: Literal["auto", "median", "most_frequent", "constant"] = "auto"
    value: float | str | None = None  # the constant of impute: constant
    max_share: float = Field(0.1, ge=0, le=1)  # the gate refuses a column missing more often

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, raw: object) -> object:
        return {"policy": raw} if isinstance(raw, str) else raw  # `age: impute`

    @model_validator(mode="after")
    def _constant(self) -> MissingRule:
        if self.impute == "constant" and self.value is None:
            raise ValueError("impute: constant needs a value")
        return self


class MissingPolicy(_Section):
    """Empty cells of a table: a rule for every column, and rules for some."""

    default: MissingRule = MissingRule()
    columns: dict[str, MissingRule] = {}  # per column, over the default

    def rule(self, column: str) -> MissingRule:
        return self.columns.get(column, self.default)


class TabularSource(_Section):
    """A CSV or Parquet file of rows: feature columns and a label column."""

    path: str  # the file, relative to the workspace
    label: str = Field(..., min_length=1)  # the label column
    # A held-out file of the same columns (Adult's adult_test.csv): the test split is its
    # rows, read under the same rules; without one, test_fraction of `path` is held out.
    test_path: str | None = None
    # Feature columns by type; empty lists mean "infer from the file" (numbers are
    # numeric, anything else categorical).
    numeric: list[str] = []
    categorical: list[str] = []
    drop: list[str] = []  # columns the loop ignores
    # Columns with a distinct value in every row (ids) are refused as features unless listed.
    keep_ids: list[str] = []
    # Cells read as missing, besides empty ones and pandas' NA spellings (NA, N/A, NaN, null).
    na_values: list[str] = ["?"]
    thousands: str | None = Field(None, min_length=1, max_length=1)  # ",": 1,234 reads 1234
    missing: MissingPolicy = MissingPolicy()
    # Rows with the same features under different labels: keep them (label noise is part
    # of a table), fail, drop every such row, or keep the majority label (a tie: dropped).
    # Rows dropped or relabelled go, with their reason, into dropped_rows.parquet.
    conflicts: Literal["keep", "fail", "drop", "majority"] = "keep"
    # What the label is: auto reads a numeric label with many distinct values (over 20) as
    # a number to predict (regression), anything else as classes
    task: Literal["auto", "classification", "regression"] = "auto"
    # A regression's target as the models learn it, in order (the answers are inverted back
    # to the label's units): log1p (a skewed, non-negative target), standardise
    target_transform: list[Literal["log1p", "standardise"]] = ["standardise"]
    # Columns the leakage check may find reproducing the label, declared as intended
    allow_leakage: list[str] = []

    @model_validator(mode="after")
    def _columns(self) -> TabularSource:
        if self.label in self.drop:
            raise ValueError(f"the label column {self.label!r} cannot be dropped")
        if self.label in self.missing.columns:
            raise ValueError(f"missing: a row without its label {self.label!r} always fails")
        return self

    @property
    def title(self) -> str:
        return f"tabular-{PurePath(self.path).stem}"


class ImageSource(_Section):
    """A folder of class folders of PNG/JPEG images."""

    path: str  # the folder, relative to the workspace
    size: tuple[int, int] = (32, 32)  # every image is resized to height x width
    color: Literal["grayscale", "rgb"] = "grayscale"  # the channels the model sees

    @property
    def title(self) -> str:
        return f"images-{PurePath(self.path).name}"


class TextSource(_Section):
    """A CSV or Parquet file of texts: a text column and a label column."""

    path: str  # the file, relative to the workspace
    text: str = Field("text", min_length=1)  # the column holding each text
    label: str = Field("label", min_length=1)  # the label column
    # The WordPiece tokenizer learnt on the training split: at most this many tokens, and
    # texts cut (or padded) to max_length tokens, [CLS] and [SEP] included; auto: the
    # length that 99% of the training texts fit in, within 8..512.
    vocab_size: int = Field(8000, ge=105, le=200_000)
    max_length: int | Literal["auto"] = "auto"
    # Exact duplicates (the same text under the same label): drop all but the first (kept
    # in dropped_rows.parquet, counted by the gate) or fail the gate. The same text under
    # two labels always fails.
    duplicates: Literal["drop", "fail"] = "drop"
    # The same text under different labels (crowd labels): fail, drop every such row, or
    # keep the label most rows give it (a tie: dropped); those rows go, with their reason,
    # into dropped_rows.parquet.
    conflicts: Literal["fail", "drop", "majority"] = "fail"
    # Unlabelled texts (a file with the same text column) for masked-language-model
    # pre-training only (train.pretrain_epochs); never in a split, never gated as labelled.
    unlabelled: str | None = None

    @model_validator(mode="after")
    def _columns(self) -> TextSource:
        if self.text == self.label:
            raise ValueError(f"text and label are the same column {self.text!r}")
        if self.max_length != "auto" and not 8 <= self.max_length <= 512:
            raise ValueError("max_length must be within 8..512, or auto")
        return self

    @property
    def title(self) -> str:
        return f"text-{PurePath(self.path).stem}"


class SyntheticSource(_Section):
    """Seeded generated data of any size, with a ``shift`` for drift experiments."""

    kind: Literal["tabular", "images"] = "tabular"  # rows or images
    samples: int = Field(5000, ge=20)  # rows or images generated
    features: int = Field(20, ge=1, le=4096)  # tabular columns
    image_size: int = Field(8, ge=4, le=256)  # images are image_size x image_size, grayscale
    classes: int = Field(4, ge=2, le=1000)  # label classes
    noise: float = Field(25.0, ge=0)  # images: std of the gaussian pixel noise (0-255 scale)
    shift: float = 0.0  # added to every feature or pixel: a drifted copy of the same task

    @property
    def title(self) -> str:
        return f"synthetic-{self.kind}"


class BatchesConfig(_Section):
    """Accepted batches (``mloop ingest``, ``mloop harvest``): which join the reference data."""

    # all: every batch; last: the newest `last` batches; days: those that arrived in the
    # last `days` days. The reference data (data.source) always counts.
    window: Literal["all", "last", "days"] = "all"
    last: int = Field(5, ge=1)
    days: float = Field(30.0, gt=0)
    # The recent test slice: this share of the newest `recent_batches` batches' rows, held
    # out from training; the gate scores challenger and champion on it.
    recent_fraction: float = Field(0.3, gt=0, lt=1)
    recent_batches: int = Field(1, ge=1)


class IngestConfig(_Section):
    """New batches (``mloop ingest``, the drop folder, ``mloop harvest``)."""

    # reject_rows: a table or text batch whose faults are single rows (a value out of
    # range, a broken text, a label not seen before) is accepted without those rows, which
    # go to quarantine with their reasons, as long as they are at most max_rejected_share
    # of it; reject_batch: any failed check refuses the whole batch.
    row_policy: Literal["reject_rows", "reject_batch"] = "reject_rows"
    max_rejected_share: float = Field(0.05, ge=0, le=1)
    # The labellers (names in .mloop/labellers.json) whose labels harvest takes; empty: all.
    harvest_sources: list[str] = []
    # Caps on what one batch may be before it is read: a table file's bytes, and the
    # decompressed bytes of a .npz's arrays (read from the zip's directory, before loading).
    max_table_bytes: int = Field(2 * 2**30, ge=1)
    max_npz_bytes: int = Field(2 * 2**30, ge=1)


class DataConfig(_Section):
    """Where the reference data comes from, and how it is split."""

    # digits: scikit-learn's built-in 8x8 digits; the others read data.<source>
    source: Literal["digits", "tabular", "images", "text", "synthetic"] = "digits"
    tabular: TabularSource | None = None  # needed when source is tabular
    images: ImageSource | None = None  # needed when source is images
    text: TextSource | None = None  # needed when source is text
    synthetic: SyntheticSource = SyntheticSource()
    batches: BatchesConfig = BatchesConfig()
    val_fraction: float = Field(0.15, gt=0, lt=0.5)  # stratified, seeded, fixed per data
    test_fraction: float = Field(0.2, gt=0, lt=0.5)  # the frozen test split

    @model_validator(mode="after")
    def _source_settings(self) -> DataConfig:
        if getattr(self, self.source, False) is None:  # a source with a section must set it
            raise ValueError(f"data.source is {self.source!r} but data.{self.source} is not set")
        return self

    @property
    def name(self) -> str:
        """The data set's name: the MLflow experiment its runs go to (its source section's
        ``title``; the built-in digits have none)."""
        section = getattr(self, self.source, None)
        return section.title if section is not None else self.source


class ValidateConfig(_Section):
    """The data gate (Great Expectations): what a batch must hold to be trained on."""

    min_rows: int = Field(100, ge=1)  # fewer rows or images: refused
    pixel_min: float = 0.0  # images: the lowest pixel value accepted
    pixel_max: float | None = None  # default: the source's scale (digits 16, image files 255)
    max_duplicate_share: float = Field(0.05, ge=0, le=1)  # share of repeated samples allowed
    min_class_share: float = Field(0.03, ge=0, le=1)  # the rarest class's share, at least
    allowed_labels: list[str] = []  # empty: the reference profile's labels
    extra_columns: Literal["fail", "warn"] = "fail"  # a column the reference lacks
    # Explicit numeric ranges, e.g. {age: [0, 120]}; other columns get the reference profile's.
    ranges: dict[str, tuple[float, float]] = {}
    # Texts: the longest text accepted (characters), and how far the mean length and mean
    # non-letter share may move from the reference profile's, as a share of the reference
    # mean, beyond the sampling noise of the batch (4 standard errors)
    max_text_chars: int = Field(5000, ge=1)
    max_text_shift: float = Field(0.15, ge=0)
    # A batch is judged as a distribution: at least range_mostly of each numeric column's
    # values within the reference range widened by range_margin of its span on each side,
    # and its mean within max_mean_shift reference standard deviations of the reference
    # mean, beyond the sampling noise of the batch (4 standard errors).
    range_mostly: float = Field(0.995, gt=0, le=1)
    range_margin: float = Field(0.1, ge=0)
    max_mean_shift: float = Field(0.5, ge=0)

    @model_validator(mode="after")
    def _range(self) -> ValidateConfig:
        if self.pixel_max is not None and self.pixel_min >= self.pixel_max:
            raise ValueError("pixel_min must be below pixel_max")
        return self
