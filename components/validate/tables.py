"""What the gate checks: the data as tables, one row per sample (images: per-image statistics)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.core.kinds import DataKind
from components.core.kinds import kind as data_kind
from components.core.paths import Workspace
from components.core.rawdata import RawData
from components.core.splits import (
    DROPPED,
    RowFile,
    load_meta,
    load_rows,
    load_split,
    split_names,
)
from components.core.text import text_statistics

IMAGE_COLUMNS = [
    "split", "label", "height", "width", "channels",
    "mean", "std", "min", "max", "finite", "digest",
]  # fmt: skip


@dataclass
class GateInput:
    """What the gate checks: one table, plus what is known about it."""

    kind: str  # the data kind's name: image, tabular, text
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

    @property
    def of(self) -> DataKind:
        """The data kind it holds (``components.core.kinds``)."""
        return data_kind(self.kind)

    def may_miss(self, column: str) -> float:
        """The share of empty cells the column may hold: 0 unless its rule drops or imputes."""
        rule = self.missing.get(column)
        return 0.0 if rule is None or rule["policy"] == "fail" else float(rule["max_share"])


# ---------------------------------------------------------------- the tables


def _digests(rows: np.ndarray) -> list[str]:
    return [hashlib.blake2b(r.tobytes(), digest_size=8).hexdigest() for r in rows]


def image_table(images: np.ndarray, labels, splits=None, block: int = 4096):
    """One row per image: the statistics the suite checks, a block of images at a time
    (``images`` may be memory-mapped and larger than memory)."""
    import pandas as pd

    n = len(images)
    stats = {k: np.empty(n) for k in ("mean", "std", "min", "max")}
    finite, digests = np.empty(n, dtype=bool), []
    for start in range(0, n, block):
        rows = np.asarray(images[start : start + block]).reshape(-1, int(np.prod(images.shape[1:])))
        flat = rows.astype(np.float64)
        end = start + len(rows)
        with np.errstate(invalid="ignore"):
            stats["mean"][start:end], stats["std"][start:end] = flat.mean(1), flat.std(1)
            stats["min"][start:end], stats["max"][start:end] = flat.min(1), flat.max(1)
        finite[start:end] = np.isfinite(flat).all(axis=1)
        digests += _digests(np.ascontiguousarray(rows))
    channels = images.shape[1] if images.ndim == 4 else 1
    return pd.DataFrame(
        {
            "split": splits if splits is not None else "all",
            "label": np.asarray(labels).astype(str),
            "height": images.shape[-2],
            "width": images.shape[-1],
            "channels": channels,
            **stats,
            "finite": finite,
            "digest": digests,
        }
    )[IMAGE_COLUMNS]


TEXT_DRIFTING = ("chars", "non_letter")  # their means are held to the reference profile's
# Characters no honest text holds: the replacement character (a decoder gave up upstream),
# lone surrogates, and control characters other than tab and line breaks.
BAD_CHARACTERS = r"[\ufffd\ud800-\udfff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"


def text_table(frame, text: str, label: str, splits=None):
    """One row per text: its statistics, whether it is blank or holds characters of a
    broken encoding, its digest (exact duplicates) and whether the same text carries
    other labels elsewhere (``_conflict``)."""
    import pandas as pd

    texts = frame[text].astype(str).where(frame[text].notna(), "")
    table = pd.DataFrame({
        "_split": splits if splits is not None else "all",
        "_label": frame[label].astype(str).where(frame[label].notna(), None).to_numpy(),
        **text_statistics(texts),
        "blank": texts.str.strip().eq("").to_numpy(),
        "bad_encoding": texts.str.contains(BAD_CHARACTERS, regex=True).to_numpy(),
    })  # fmt: skip
    table["_digest"] = pd.util.hash_pandas_object(texts, index=False).astype(str).to_numpy()
    labels_per_text = table.groupby("_digest")["_label"].transform("nunique")
    table["_conflict"] = (labels_per_text > 1).to_numpy()
    table["_text"] = texts.to_numpy()  # for the report's examples and quarantine
    return table


def looks_numeric(column) -> bool:
    """A text column whose values are nearly all numbers, maybe with thousands separators
    ("51,234"): a numeric column with faults, or one that needs data.tabular.thousands."""
    import pandas as pd

    values = column.dropna().astype(str).str.replace(r"(?<=\d)[,_ '](?=\d{3})", "", regex=True)
    return len(values) > 0 and pd.to_numeric(values, errors="coerce").notna().mean() >= 0.9


def row_table(frame, label: str, numeric: list[str], splits=None):
    """A table's rows plus ``_split``, ``_label`` (as text), ``_finite`` and ``_digest``."""
    import pandas as pd

    table = frame.copy()
    table["_split"] = splits if splits is not None else "all"
    table["_label"] = frame[label].astype(str).where(frame[label].notna(), None)
    present = [c for c in numeric if c in frame.columns]
    values = np.column_stack(
        [pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float64) for c in present]
    ) if present else np.zeros((len(frame), 0))  # fmt: skip
    table["_finite"] = ~np.isinf(values).any(axis=1)
    encoded = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    table["_digest"] = encoded.astype(str)
    return table


def class_table(table, label_column: str, split_column: str, classes: list[str]):
    """Count and share of each class in each split; a class absent from a split counts 0."""
    import pandas as pd

    labels = sorted(set(classes) | set(table[label_column].dropna().unique().tolist()))
    grid = pd.MultiIndex.from_product([sorted(table[split_column].unique()), labels])
    counts = table.groupby([split_column, label_column]).size().reindex(grid, fill_value=0)
    counts = counts.rename("count").rename_axis(["split", "label"]).reset_index()
    counts["share"] = counts["count"] / counts.groupby("split")["count"].transform("sum")
    return counts


# ---------------------------------------------------------------- entry points


def gate_input(raw: RawData, name: str, splits=None, conflicts: str = "fail") -> GateInput:
    """What the gate checks of ``raw``; ``conflicts``: data.text.conflicts (any other
    policy than fail lets prepare settle the same text under two labels)."""
    if data_kind(raw.kind).tokenized:
        return GateInput(
            kind="text", table=text_table(raw.frame, raw.text_column, raw.label_column, splits),
            label_column=raw.label_column, text_column=raw.text_column, origin=raw.origin,
            name=name, conflicts=conflicts,
        )  # fmt: skip
    if data_kind(raw.kind).pixels:
        table = image_table(raw.images, raw.labels, splits)
    else:
        table = row_table(raw.frame, raw.label_column, raw.numeric, splits)
    return GateInput(
        kind=raw.kind, table=table, label_column=raw.label_column, numeric=raw.numeric,
        categorical=raw.categorical, pixel_max=raw.pixel_max, rejected=raw.rejected,
        files=raw.files, origin=raw.origin, name=name, missing=raw.missing,
    )  # fmt: skip


def prepared_gate_input(ws: Workspace) -> GateInput:
    """The prepared splits, as the gate sees them."""
    import pandas as pd

    meta = load_meta(ws.prepared)
    classes = meta["classes"]
    kind = data_kind(meta["kind"])
    if kind.pixels:  # each split read a block at a time: no concatenation
        tables = []
        for name in split_names(meta):
            y = load_split(ws.prepared, name).y
            labels = np.asarray(classes, dtype=object)[y]
            x = RowFile(ws.prepared / f"{name}_x.npy")
            tables.append(image_table(x, labels, [name] * len(y)))
        table = pd.concat(tables, ignore_index=True)
        return GateInput(
            kind="image", table=table, pixel_max=meta["pixel_max"],
            rejected=[(r["file"], r["reason"]) for r in meta["rejected"]],
            origin=Path(meta["origin"]) if meta["origin"] else None, name=meta["name"],
        )  # fmt: skip
    if kind.tokenized:  # the kept texts: duplicates dropped by rule are not gated
        names = split_names(meta)
        frames = [load_rows(ws.prepared, s) for s in names]
        frame = pd.concat(frames, ignore_index=True)
        splits = np.concatenate([[s] * len(f) for s, f in zip(names, frames, strict=True)])
        raw = RawData(kind="text", labels=np.asarray([]), frame=frame,
                      label_column=meta["text"]["label"], text_column=meta["text"]["column"],
                      origin=Path(meta["origin"]) if meta["origin"] else None)  # fmt: skip
        return gate_input(raw, meta["name"], splits)
    left_out = (ws.prepared / f"{DROPPED}_rows.parquet").is_file()  # by a `drop` rule
    names = [*split_names(meta), DROPPED] if left_out else split_names(meta)
    frames = [load_rows(ws.prepared, s).drop(columns="_reason", errors="ignore") for s in names]
    schema = meta["schema"]
    raw = RawData(
        kind="tabular",
        labels=np.asarray([]),
        frame=pd.concat(frames, ignore_index=True),
        label_column=schema["label"],
        numeric=schema["numeric"],
        categorical=list(schema["categorical"]),
        origin=Path(meta["origin"]) if meta["origin"] else None,
        missing=schema.get("missing", {}),
    )
    splits = np.concatenate([[s] * len(f) for s, f in zip(names, frames, strict=True)])
    return gate_input(raw, meta["name"], splits)
