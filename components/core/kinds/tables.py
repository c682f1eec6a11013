"""The table kind: CSV and Parquet files of rows, and synthetic rows.

Faults that make a whole file unusable (empty, header only, truncated, not UTF-8, no label
column) raise ``DataError`` naming the fault.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.core.kinds.base import (
    BODY_OVERHEAD,
    BYTES_PER_VALUE,
    MAX_BATCH,
    Refused,
    check_batch,
)
from components.core.kinds.table_checks import TableChecks
from components.core.rawdata import DataError, RawData, refuse_link, refuse_oversize

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    from components.core.config import DataConfig, SyntheticSource, TabularSource
    from components.core.kinds.encoding import TableEncoding

TABLE_SUFFIXES = {".csv", ".parquet", ".pq"}
ID_MIN_ROWS = 50  # below this, a column of distinct values is no sign of an identifier


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


def synthetic_rows(cfg: SyntheticSource, seed: int) -> RawData:
    """Gaussian class blobs, ``shift`` added to every feature; made in chunks of a million."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, cfg.classes, size=cfg.samples)
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


class Tables(TableChecks):
    name, noun, route, batch_format, row_table = "tabular", "rows", "/predict_rows", "table", True
    family = "mlp"
    baselines = ("trees", "linear")
    features = True
    logged = drifting = ("mean", "std", "min", "max", "ink")  # of each row's encoded values

    def encode(self, raw: RawData, train_idx: np.ndarray, cfg: DataConfig, out_dir: Path,
               previous: dict | None, given=None) -> tuple[np.ndarray, dict]:  # fmt: skip
        """Numbers and one-hot categories (``TableEncoding``); meta.json keeps the encoder
        as the model's ``schema``, which the service and harvest load back."""
        from components.core.kinds.encoding import TableEncoding

        encoding = TableEncoding.fit(raw, train_idx)
        return encoding.encode(raw.frame), {"schema": encoding.as_schema()}

    def request(self, rows, encoding: TableEncoding) -> np.ndarray:
        """A request's ``rows`` (one object {column: value} or a list of them) as the
        model's input, through the encoder training fitted (``TableEncoding.encode_rows``:
        ``RowRefused`` names the first value it cannot take)."""
        if isinstance(rows, dict):
            rows = [rows]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise Refused("rows must be an object {column: value} or a list of them")
        check_batch(len(rows))
        return encoding.encode_rows(rows)

    def body_limit(self, meta: dict, max_file_bytes: int) -> int:
        """Its largest batch of rows: each column's name and a number, or its longest
        category."""
        schema = meta["schema"]
        columns = [*schema["numeric"], *schema["categorical"], schema["label"]]
        per_row = sum(len(c) + 8 for c in columns) + BYTES_PER_VALUE * len(columns)
        per_row += sum(max(map(len, cats), default=0) for cats in schema["categorical"].values())
        return MAX_BATCH * per_row + BODY_OVERHEAD

    def read_batch(self, batch, cfg: DataConfig, reference: RawData, images_out: Path) -> RawData:
        folder = batch.folder
        if batch.format != "table":
            raise DataError(f"batch {batch.id} holds images; the data set is a table", folder)
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


TABLES = Tables()
