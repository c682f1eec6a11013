"""Reading the data sources: built-in digits, a CSV/Parquet table, an image folder, synthetic.

Readers only read: raw input is never modified, and no symbolic link is followed: a link
where data is read (the file, the folder, a class folder, an image) is refused, naming
it, since it could name anything on the machine. Faults that make a whole file
unusable (empty, header only, truncated, not UTF-8, no label column, no class
folders) raise ``DataError`` naming the fault. Faults of single images
(corrupt, zero bytes, wrong channel count) are returned as rejections, for the
gate to report and quarantine.
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    from components.core.config import DataConfig, IngestConfig, SyntheticSource, TabularSource


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
TABLE_SUFFIXES = {".csv", ".parquet", ".pq"}
ID_MIN_ROWS = 50  # below this, a column of distinct values is no sign of an identifier


class DataError(ValueError):
    """The input cannot be used at all; the message names the fault and the file."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        self.path = path
        self.message = message  # without the path
        self.quarantine: Path | None = None  # where a copy of the rejected input was put
        super().__init__(f"{path}: {message}" if path else message)


@dataclass
class RawData:
    """What a source holds, as read, before any split or encoding."""

    kind: str  # "image" or "tabular"
    labels: np.ndarray  # raw labels, one per sample (strings for tables and folders)
    # (N, H, W) or (N, C, H, W) on the raw pixel scale: uint8 from image files (a RowFile,
    # read a block at a time), float32 arrays for the digits and synthetic images
    images: np.ndarray | None = None
    frame: object = None  # pandas.DataFrame: the table as read, label column included
    label_column: str | None = None
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # image files, one per sample
    # Tables: each feature column's missing-value rule (``MissingRule.model_dump()``)
    missing: dict[str, dict] = field(default_factory=dict)
    held_out: int = 0  # tables read with a test file: its rows, the last ones, are the test split
    scratch: object = None  # a temporary folder holding the decoded images, if any
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    pixel_max: float = 255.0
    origin: Path | None = None
    text_column: str | None = None  # texts: the column holding each text

    def __len__(self) -> int:
        return len(self.labels)


def refuse_link(path: Path) -> None:
    """Raise ``DataError`` if ``path`` is a symbolic link: data is never read through one."""
    if Path(path).is_symlink():
        raise DataError(
            f"a symbolic link (to {os.readlink(path)}): links are never followed where data is"
            " read; copy the data in",
            Path(path),
        )


def refuse_oversize(path: Path, size: int, max_bytes: int | None, setting: str) -> None:
    if max_bytes is not None and size > max_bytes:
        raise DataError(f"{size:,} bytes, over the {max_bytes:,} that {setting} accepts", path)


# ---------------------------------------------------------------- built-in and synthetic


def read_digits() -> RawData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return RawData(
        kind="image",
        labels=digits.target.astype(np.int64),
        images=digits.images.astype(np.float32),
        pixel_max=16.0,
    )


def synthetic(cfg: SyntheticSource, seed: int) -> RawData:
    """A seeded classification task of any size: Gaussian class blobs or class-patterned images.

    ``shift`` is added to every feature or pixel, giving a drifted copy of the same task.
    Generated in chunks so millions of samples fit in memory as float32.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, cfg.classes, size=cfg.samples)
    if cfg.kind == "tabular":
        import pandas as pd

        centers = rng.normal(0.0, 1.5, size=(cfg.classes, cfg.features)).astype(np.float32)
        x = np.empty((cfg.samples, cfg.features), dtype=np.float32)
        for start in range(0, cfg.samples, 1_000_000):
            end = min(start + 1_000_000, cfg.samples)
            noise = rng.standard_normal((end - start, cfg.features), dtype=np.float32)
            x[start:end] = centers[labels[start:end]] + noise + cfg.shift
        names = [f"f{i:03d}" for i in range(cfg.features)]
        frame = pd.DataFrame(x, columns=names)
        frame["label"] = labels.astype(str)
        return RawData(
            kind="tabular",
            labels=frame["label"].to_numpy(),
            frame=frame,
            label_column="label",
            numeric=names,
        )
    size = cfg.image_size
    patterns = rng.uniform(0, 200, size=(cfg.classes, size, size)).astype(np.float32)
    images = np.empty((cfg.samples, size, size), dtype=np.float32)
    for start in range(0, cfg.samples, 200_000):
        end = min(start + 200_000, cfg.samples)
        noise = rng.normal(0, cfg.noise, size=(end - start, size, size)).astype(np.float32)
        images[start:end] = np.clip(patterns[labels[start:end]] + noise + cfg.shift, 0, 255)
    return RawData(kind="image", labels=labels.astype(np.int64), images=images, pixel_max=255.0)


# ---------------------------------------------------------------- tables


def _decode_csv(path: Path) -> str:
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError("empty file: no header and no rows", path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        bad = raw[err.start : err.start + 1].hex()
        line = raw[: err.start].count(b"\n") + 1
        where = f"byte 0x{bad} at offset {err.start} (line {line})"
        raise DataError(f"not valid UTF-8: {where}", path) from None
    # Only the first and the last line matter here: no list of every line of a big file.
    body = text.rstrip()
    first_break = body.find("\n")
    header = next(csv.reader([body[: first_break if first_break >= 0 else None].rstrip("\r")]))
    if first_break < 0:
        raise DataError(f"header only: {len(header)} columns and no data rows", path)
    last = next(csv.reader([body[body.rfind("\n") + 1 :].rstrip("\r")]))
    if len(last) < len(header):
        raise DataError(
            f"truncated: the last line (line {body.count(chr(10)) + 1}) has {len(last)} of"
            f" {len(header)} fields; the file looks cut off",
            path,
        )
    return text


def _table_suffix(path: Path, max_bytes: int | None = None) -> str:
    """The suffix of a table file that exists, is no link, is not empty, is CSV or Parquet
    and holds at most ``max_bytes`` (ingest.max_table_bytes: it is read whole)."""
    refuse_link(path)
    if not path.is_file():
        raise DataError("no such file", path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"unknown table format {suffix!r}; expected .csv or .parquet", path)
    size = path.stat().st_size
    if size == 0:
        raise DataError("empty file: 0 bytes", path)
    refuse_oversize(path, size, max_bytes, "ingest.max_table_bytes")
    return suffix


def _read_parquet(path: Path):
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a broken file
        raise DataError(f"not a readable Parquet file: {err}", path) from None


def read_table(
    path: Path,
    label: str,
    numeric=(),
    categorical=(),
    source: TabularSource | None = None,
    batch: bool = False,
    max_bytes: int | None = None,
) -> RawData:
    """Read a CSV or Parquet table. Columns keep the types the file gives them.

    ``source`` (the configured table) adds its reading rules: the cells that mean
    missing, the thousands separator, the columns to drop, the identifier columns
    kept on purpose and each column's missing-value rule. ``batch``: a batch of a data
    set whose features the reference file settled: no identifier check (a small batch
    may hold distinct values by chance), and the dropped columns may be gone already
    (rows harvested from the inference log).
    """
    import pandas as pd

    path = Path(path)
    suffix = _table_suffix(path, max_bytes)
    na_values = list(source.na_values) if source else ["?"]
    if suffix == ".csv":
        text = _decode_csv(path)
        try:
            frame = pd.read_csv(
                io.StringIO(text), skipinitialspace=True, na_values=na_values,
                thousands=source.thousands if source else None,
            )  # fmt: skip
        except pd.errors.ParserError as err:
            raise DataError(f"malformed CSV: {err}", path) from None
    else:
        frame = _read_parquet(path)
        if frame.empty:
            raise DataError(f"no data rows ({len(frame.columns)} columns)", path)
        text_columns = frame.select_dtypes(include=["object", "string"]).columns
        frame[text_columns] = frame[text_columns].replace(na_values, None)
    if label not in frame.columns:
        raise DataError(f"label column {label!r} missing; columns are {list(frame.columns)}", path)
    if source is not None:
        named = {"drop": source.drop, "keep_ids": source.keep_ids,
                 "missing.columns": list(source.missing.columns)}  # fmt: skip
        if batch:
            named.pop("drop")
        for key, columns in named.items():
            unknown = [c for c in columns if c not in frame.columns]
            if unknown:
                raise DataError(f"data.tabular.{key} names no column of the file: {unknown}", path)
        frame = frame.drop(columns=[c for c in source.drop if c in frame.columns])
    numeric, categorical = list(numeric), list(categorical)
    if not numeric and not categorical:  # infer: numbers are numeric, the rest categorical
        features = [c for c in frame.columns if c != label]
        numeric = [c for c in features if pd.api.types.is_numeric_dtype(frame[c])]
        categorical = [c for c in features if c not in numeric]
    keep = set(source.keep_ids) if source else set()
    for col in (c for c in [*numeric, *categorical] if c not in keep and not batch):
        if _identifies_rows(frame[col]):
            raise DataError(
                f"column {col!r} holds a distinct value in every row: an identifier, not a"
                " feature; list it under data.tabular.drop to ignore it, or data.tabular.keep_ids"
                " to train on it anyway",
                path,
            )
    rules = {}
    if source is not None:
        rules = {
            c: source.missing.rule(c).model_dump(exclude_none=True)
            for c in [*numeric, *categorical]
        }
    return RawData(
        kind="tabular",
        labels=frame[label].astype(str).to_numpy(),
        frame=frame,
        label_column=label,
        numeric=numeric,
        categorical=categorical,
        origin=path,
        missing=rules,
    )


def with_test_file(raw: RawData, test: RawData) -> RawData:
    """The table followed by its held-out test file's rows (``held_out`` counts them)."""
    import pandas as pd

    if list(test.frame.columns) != list(raw.frame.columns):
        raise DataError(
            f"the test file's columns {list(test.frame.columns)} differ from the training"
            f" file's {list(raw.frame.columns)}",
            test.origin,
        )
    frame = pd.concat([raw.frame, test.frame], ignore_index=True)
    return RawData(
        kind="tabular", labels=np.concatenate([raw.labels, test.labels]), frame=frame,
        label_column=raw.label_column, numeric=raw.numeric, categorical=raw.categorical,
        origin=raw.origin, missing=raw.missing, held_out=len(test),
    )  # fmt: skip


def _identifies_rows(column) -> bool:
    """Distinct in every row and not a measurement: integers or text (floats may all differ)."""
    import pandas as pd

    types = pd.api.types
    if len(column) < ID_MIN_ROWS or types.is_float_dtype(column) or types.is_bool_dtype(column):
        return False
    return bool(column.notna().all() and column.is_unique)


# ---------------------------------------------------------------- image folders


def read_image_folder(
    path: Path, size: tuple[int, int], color: str, out: Path | None = None
) -> RawData:
    """Read ``path/<class>/<image>``; each image resized to ``size`` (height, width).

    The pixels are decoded in parallel processes (``images.decode_files``) into the
    uint8 ``.npy`` file ``out`` (a temporary file when None, removed with the RawData)
    and come back as a ``RowFile``, read a block at a time: the folder may be larger
    than memory.
    """
    import logging
    import tempfile

    from components.prepare.images import Progress, decode_files, pixel_shape

    path = Path(path)
    refuse_link(path)
    if not path.is_dir():
        raise DataError("no such folder", path)
    entries = [p for p in sorted(path.iterdir()) if not p.name.startswith(".")]
    for entry in entries:
        refuse_link(entry)  # a class folder linked elsewhere is never read
    classes = [p.name for p in entries if p.is_dir()]
    if not classes:
        raise DataError("no class sub-folders: expected one folder of images per class", path)
    files, labels = [], []
    for label in classes:
        found = 0
        for entry in sorted(os.scandir(path / label), key=lambda e: e.name):
            if Path(entry.name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            # A linked image is listed and rejected by the decoder, never opened.
            if not entry.is_dir(follow_symlinks=False):
                files.append(f"{label}/{entry.name}")
                labels.append(label)
                found += 1
        if not found:
            raise DataError(
                f"class folder {label!r} holds no {'/'.join(sorted(IMAGE_SUFFIXES))} image:"
                " every class needs images (remove the folder, or add its images)",
                path,
            )
    scratch = None
    if out is None:
        scratch = tempfile.TemporaryDirectory(prefix="mloop-images-")
        out = Path(scratch.name) / "images.npy"
    log = logging.getLogger(__name__)
    log.info(f"decoding {len(files):,} images from {path} ({os.cpu_count()} processes)")
    images, kept, rejected = decode_files(
        path, files, tuple(size), color, out, progress=Progress(log, "images read")
    )
    return RawData(
        kind="image",
        labels=np.asarray(labels, dtype=object)[kept].astype(str),
        images=images if len(kept) else np.zeros((0, *pixel_shape(size, color)), np.uint8),
        files=[files[i] for i in kept],
        rejected=rejected,
        pixel_max=255.0,
        origin=path,
        scratch=scratch,  # the temporary file lives as long as the RawData
    )


# ---------------------------------------------------------------- texts


def _text_frame(path: Path, max_bytes: int | None = None):
    """A CSV (UTF-8 as a whole, every cell as text: "NA" or "null" is a message, not a
    gap) or Parquet file of texts, as read."""
    import pandas as pd

    if _table_suffix(path, max_bytes) != ".csv":
        return _read_parquet(path)
    try:
        return pd.read_csv(io.StringIO(_decode_csv(path)), dtype=str, keep_default_na=False)
    except pd.errors.ParserError as err:
        raise DataError(f"malformed CSV: {err}", path) from None


def read_text_table(path: Path, text: str, label: str, max_bytes: int | None = None) -> RawData:
    """A CSV or Parquet file of texts: a text column and a label column, as read.

    A CSV must be UTF-8 as a whole (else it is refused, naming the first bad byte);
    single texts that hold replacement characters, lone surrogates or control
    characters are left for the gate, which rejects them row by row.
    """
    path = Path(path)
    frame = _text_frame(path, max_bytes)
    missing = [c for c in (text, label) if c not in frame.columns]
    if missing:
        raise DataError(f"column(s) {missing} missing; columns are {list(frame.columns)}", path)
    if text == label:
        raise DataError(f"the text and the label are the same column {text!r}", path)
    frame = frame[[text, label]]
    labels = frame[label].astype(str).where(frame[label].notna(), None).to_numpy()
    return RawData(kind="text", labels=labels, frame=frame, label_column=label,
                   text_column=text, origin=path)  # fmt: skip


def read_unlabelled(path: Path, text: str) -> list[str]:
    """The texts of column ``text`` of a CSV or Parquet file with no labels (pre-training
    texts); blank ones are left out."""
    path = Path(path)
    frame = _text_frame(path)
    if text not in frame.columns:
        raise DataError(f"no text column {text!r}; columns are {list(frame.columns)}", path)
    texts = frame[text].dropna().astype(str)
    return texts[texts.str.strip() != ""].tolist()


# ---------------------------------------------------------------- arrays


def npz_bytes(path: Path) -> int:
    """What a ``.npz``'s arrays take once loaded, from the zip's directory and each array's
    header, before any array is read: the larger of the entry's stated size and the bytes
    its header's shape asks numpy to allocate (a small file can claim a huge array)."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            declared = 0
            with archive.open(info) as entry:
                fmt = np.lib.format
                try:
                    version = fmt.read_magic(entry)
                except ValueError:  # no .npy entry: np.load refuses it
                    version = None
                if version is not None:
                    read = {(1, 0): fmt.read_array_header_1_0,
                            (2, 0): fmt.read_array_header_2_0}.get(version)  # fmt: skip
                    if read is None:
                        raise DataError(f"{info.filename}: .npy format {version} is not read"
                                        " here (1.0 and 2.0 are)", Path(path))  # fmt: skip
                    shape, _, dtype = read(entry)
                    declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            total += max(info.file_size, declared)
    return total


def read_arrays(path: Path, pixel_max: float, max_bytes: int | None = None) -> RawData:
    """A ``.npz`` file of images ``x`` (N x H x W or N x C x H x W, on the source's pixel
    scale) and labels ``y``: a batch of the built-in digits or of synthetic images.
    ``max_bytes`` (ingest.max_npz_bytes) caps its arrays' size, checked before loading."""
    path = Path(path)
    refuse_link(path)
    try:
        if max_bytes is not None:
            refuse_oversize(path, npz_bytes(path), max_bytes,
                            "ingest.max_npz_bytes (decompressed)")  # fmt: skip
        with np.load(path, allow_pickle=False) as npz:
            if not {"x", "y"} <= set(npz.files):
                raise DataError(f"expected arrays x and y, found {sorted(npz.files)}", path)
            x, y = npz["x"], npz["y"]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # pickled objects too
        raise DataError(f"not a readable .npz of arrays x and y: {err}", path) from None
    if x.ndim not in (3, 4) or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"x must be numbers shaped N x H x W or N x C x H x W, got {x.shape}", path)
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"y must hold one label per image: {len(x)} images, y {y.shape}", path)
    if y.dtype.kind not in "iuU":
        raise DataError(f"labels must be whole numbers or text, got {y.dtype}", path)
    labels = y.astype(np.int64) if y.dtype.kind in "iu" else y.astype(str)
    return RawData(kind="image", labels=labels, images=x.astype(np.float32), pixel_max=pixel_max,
                   origin=path)  # fmt: skip


def source_pixel_max(cfg: DataConfig) -> float:
    """The pixel scale of an image source: 16 for the built-in digits, 255 otherwise."""
    return 16.0 if cfg.source == "digits" else 255.0


def read_batch(batch, cfg: DataConfig, reference: RawData, images_out: Path) -> RawData:
    """An accepted batch (``prepare.batches.Batch``), read as its reference data was, less
    the rows its gate left out (``batch.rejected``)."""
    raw = _read_batch(batch, cfg, reference, images_out)
    if batch.rejected and raw.frame is not None:
        keep = np.ones(len(raw.frame), bool)
        keep[list(batch.rejected)] = False
        raw.frame = raw.frame[keep].reset_index(drop=True)
        raw.labels = np.asarray(raw.labels)[keep]
    return raw


def _read_batch(batch, cfg: DataConfig, reference: RawData, images_out: Path) -> RawData:
    folder = batch.folder
    if batch.format == "table" and reference.kind == "text":
        return read_text_table(folder / batch.data[0], cfg.text.text, cfg.text.label)
    if batch.format == "table":
        if reference.kind != "tabular":
            raise DataError(f"batch {batch.id} is a table; the data set holds images", folder)
        t = cfg.tabular
        raw = read_table(folder / batch.data[0], t.label, reference.numeric,
                         reference.categorical, t, batch=True)  # fmt: skip
        if list(raw.frame.columns) != list(reference.frame.columns):
            raise DataError(
                f"batch {batch.id}: columns {list(raw.frame.columns)} differ from the data"
                f" set's {list(reference.frame.columns)}",
                folder,
            )
        return raw
    if reference.kind != "image":
        raise DataError(f"batch {batch.id} holds images; the data set is a table", folder)
    if batch.format == "images":
        if cfg.source != "images":
            raise DataError(f"batch {batch.id} is an image folder; data.source is {cfg.source}")
        raw = read_image_folder(folder / "files", cfg.images.size, cfg.images.color, images_out)
    else:
        raw = read_arrays(folder / batch.data[0], reference.pixel_max)
    if tuple(raw.images.shape[1:]) != tuple(reference.images.shape[1:]):
        raise DataError(
            f"batch {batch.id}: images shaped {tuple(raw.images.shape[1:])}, the data set's"
            f" {tuple(reference.images.shape[1:])}",
            folder,
        )
    if np.issubdtype(np.asarray(reference.labels).dtype, np.integer):
        try:
            raw.labels = np.asarray(raw.labels).astype(np.int64)
        except ValueError:
            raise DataError(f"batch {batch.id}: labels are not whole numbers", folder) from None
    else:
        raw.labels = np.asarray(raw.labels).astype(str)
    return raw


# ---------------------------------------------------------------- dispatch


def read_source(
    cfg: DataConfig, seed: int, root: Path = Path("."), images_out: Path | None = None
) -> RawData:
    """The configured source, as read; relative paths are relative to ``root`` (the workspace).
    An image folder's pixels go to the ``.npy`` file ``images_out`` (else a temporary one)."""
    if cfg.source == "digits":
        return read_digits()
    if cfg.source == "synthetic":
        return synthetic(cfg.synthetic, seed)
    if cfg.source == "tabular":
        t = cfg.tabular
        raw = read_table(Path(root) / t.path, t.label, t.numeric, t.categorical, t)
        if t.test_path:
            raw = with_test_file(raw, read_table(Path(root) / t.test_path, t.label,
                                                 raw.numeric, raw.categorical, t))  # fmt: skip
        return raw
    if cfg.source == "text":
        t = cfg.text
        return read_text_table(Path(root) / t.path, t.text, t.label)
    images = cfg.images
    return read_image_folder(Path(root) / images.path, images.size, images.color, images_out)


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
    if cfg.source == "text" and cfg.text is not None:  # a batch of the data set's texts
        return read_text_table(path, cfg.text.text, label or cfg.text.label, tables)
    label = label or (cfg.tabular.label if cfg.tabular else None)
    if label is None:
        raise DataError("a table needs its label column: pass --label or set data.tabular", path)
    t = cfg.tabular
    declared = t is not None and t.label == label  # a batch of the configured data set
    if not declared:
        return read_table(path, label, max_bytes=tables)
    return read_table(path, label, t.numeric, t.categorical, t, max_bytes=tables)
