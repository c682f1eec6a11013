"""The ``prepare`` stage: turn the configured source into fixed, versioned split files.

The split is stratified and seeded, and the files (``splits.py``) are written
byte-for-byte reproducibly, so DVC sees no change on a second run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.core.kinds import kind as data_kind
from components.core.kinds.sources import read_batch, read_source
from components.core.kinds.tokenizer import FILE as TOKENIZER_FILE
from components.core.rawdata import DataError, RawData
from components.core.splits import (
    DROPPED,
    RECENT,
    RowFile,
    batch_split_indices,
    load_meta,
    load_rows,
    npy_header,
    reference_texts,
    split_indices,
    write_rows,
)
from components.core.tasks import CLASSIFICATION, REGRESSION, Task
from components.core.tasks.regression import numeric_label
from components.prepare import texts
from components.prepare.batches import BatchError, in_window, list_batches, verify
from components.prepare.conflicts import kept_counts, settle_conflicts
from components.prepare.leakage import probable_leakage
from components.prepare.tables import drop_missing
from components.validate.quarantine import quarantine_unreadable

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    from components.core.config import DataConfig

DECODED = ".decoded.npy"  # prepare's scratch file: an image folder's pixels before the split


@dataclass(frozen=True)
class PreparedData:
    folder: Path
    kind: str
    counts: dict[str, int]
    classes: list
    input_shape: tuple[int, ...]
    version: str  # content hash of the split files
    rejected: int
    dropped: int = 0  # table rows left out by a `drop` missing-value rule
    batches: tuple[str, ...] = ()  # the accepted batches joined to the reference data
    task: str = "classification"
    task_reason: str = ""  # data.tabular.task: auto, said: why this task
    leakage: tuple[str, ...] = ()  # probable leakage, said

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        rejected = f"; {self.rejected} files rejected at read" if self.rejected else ""
        if self.dropped:
            rejected += (
                f"; {self.dropped} rows left out by the declared rules (duplicates,"
                " conflicting labels, missing values; reasons in dropped_rows.parquet)"
            )
        joined = f"; reference data + {len(self.batches)} batches" if self.batches else ""
        task = f"; {self.task_reason}" if self.task_reason else ""
        leaks = "".join(f"; WARNING {m}" for m in self.leakage)
        return (f"{self.kind} data: {counts} samples{joined}; data version {self.version}"
                f"{rejected}{task}{leaks}")  # fmt: skip


def _concat_images(parts: list, out: Path):
    """The images of ``parts`` one after another, in the first one's dtype: in memory when
    they all are, else streamed into the ``.npy`` file ``out`` and read back as a RowFile."""
    dtype = parts[0].dtype
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate([np.asarray(p, dtype=dtype) for p in parts])
    with open(out, "wb") as fh:
        npy_header(fh, dtype, (sum(len(p) for p in parts), *parts[0].shape[1:]))
        for part in parts:
            for start in range(0, len(part), 8192):
                block = np.asarray(part[start : start + 8192])
                if np.issubdtype(dtype, np.integer):  # harvested pixels: floats of 0..255
                    block = np.clip(np.rint(block), 0, np.iinfo(dtype).max)
                fh.write(np.ascontiguousarray(block, dtype=dtype).tobytes())
    return RowFile(out)


def join_batches(raw: RawData, batches: list[RawData], ids: list[str], scratch: Path) -> RawData:
    """The reference data followed by each batch's rows (the reference's test file stays
    where ``held_out`` finds it: the split counts only the reference rows for it)."""
    import pandas as pd

    labels = np.concatenate([np.asarray(raw.labels), *(np.asarray(b.labels) for b in batches)])
    files = list(raw.files)
    if files:  # an image folder: which file each row came from
        for batch_id, b in zip(ids, batches, strict=True):
            files += [f"{batch_id}/{f}" for f in b.files] or [f"{batch_id}#{i}" for i in
                                                               range(len(b))]  # fmt: skip
    joined = RawData(
        kind=raw.kind, labels=labels, label_column=raw.label_column, numeric=raw.numeric,
        categorical=raw.categorical, files=files, missing=raw.missing, held_out=raw.held_out,
        rejected=[*raw.rejected, *(r for b in batches for r in b.rejected)],
        pixel_max=raw.pixel_max, origin=raw.origin, scratch=[raw.scratch, *(b.scratch for b in
                                                                            batches)],
    )  # fmt: skip
    if data_kind(raw.kind).row_table:
        joined.frame = pd.concat([raw.frame, *(b.frame for b in batches)], ignore_index=True)
        joined.text_column = raw.text_column
    else:
        joined.images = _concat_images([raw.images, *(b.images for b in batches)], scratch)
    return joined


def read_batches(cfg: DataConfig, raw: RawData, batches_root: Path | None, out_dir: Path,
                 now: float | None):  # fmt: skip
    """The accepted batches inside ``data.batches.window``, each checked against its hash."""
    if batches_root is None:
        return [], []
    try:
        chosen = in_window(list_batches(batches_root), cfg.batches, now)
        for batch in chosen:
            verify(batch)
    except BatchError as err:
        raise DataError(str(err)) from None
    read = [read_batch(b, cfg, raw, out_dir / f".{b.id}.npy") for b in chosen]
    return chosen, read


def prepare(
    cfg: DataConfig,
    seed: int,
    out_dir: Path,
    quarantine: Path | None = None,
    root: Path = Path("."),
    batches_root: Path | None = None,
    now: float | None = None,
    given=None,
):
    """Read the source and the accepted batches, split them, write the split files and
    ``meta.json``.

    The reference data's train/val/test split is the same whatever batches join it:
    its test split is the frozen one the gate holds every challenger to. Batch rows go
    to train and val, except ``data.batches.recent_fraction`` of the newest
    ``recent_batches`` batches: the ``recent`` split, which no model trains on.
    ``given``: the encoder a pretrained model brings (``pretrained_encoder``).
    """
    decoded = out_dir / DECODED  # an image folder's pixels, before the split
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        raw = read_source(cfg, seed, root, images_out=decoded)
    except DataError as err:
        if quarantine is not None:
            err.quarantine = quarantine_unreadable(err, quarantine)
        raise
    task, why = choose_task(cfg, raw)  # by the reference data, as read: batches follow it
    chosen, parts = read_batches(cfg, raw, batches_root, out_dir, now)
    dropped = None
    kind = data_kind(raw.kind)
    if kind.features:
        left_out = [d for d in (drop_missing(r) for r in [raw, *parts]) if d is not None]
        dropped = _concat_frames(left_out)
    n_ref, sizes = len(raw), [len(p) for p in parts]
    if parts:
        raw = join_batches(raw, parts, [b.id for b in chosen], out_dir / f".joined{DECODED}")
    if kind.row_table:  # the same features under two labels
        policy, key = ((cfg.text.conflicts, [raw.text_column]) if kind.tokenized else
                       (cfg.tabular.conflicts if cfg.tabular else "keep",
                        [*raw.numeric, *raw.categorical]))  # fmt: skip
        settled, kept = settle_conflicts(raw, policy, key)
        n_ref, sizes = kept_counts(kept, n_ref, sizes)
        dropped = _concat_frames([d for d in (dropped, settled) if d is not None])
    if kind.tokenized:  # a repeat of an earlier text, in a batch too, never joins twice
        repeats, kept = texts.drop_duplicates(raw, cfg.text)
        n_ref, sizes = kept_counts(kept, n_ref, sizes)
        dropped = _concat_frames([d for d in (dropped, repeats) if d is not None])
    try:
        y, classes = task.targets(raw.labels)
    except ValueError as err:
        raise DataError(f"label {raw.label_column!r}: {err}", raw.origin) from None
    if task.outputs_values:  # one type in the rows kept: a batch's file may hold text numbers
        raw.frame[raw.label_column] = y
    splits = split_indices(y[:n_ref], cfg, seed, held_out=raw.held_out)
    if parts:
        extra = batch_split_indices(y, n_ref, sizes, cfg, seed)
        for name, idx in extra.items():
            splits[name] = np.sort(np.concatenate([splits.get(name, []), idx]).astype(np.int64))
    previous = load_meta(out_dir) if (out_dir / "meta.json").is_file() else None
    x, encoder = kind.encode(raw, splits["train"], cfg, out_dir, previous, given)  # on train
    target = target_scale(cfg, y, splits["train"], raw) if task.outputs_values else None
    leakage = []
    if kind.features:
        leakage = probable_leakage(
            raw.frame.iloc[splits["train"]], raw.numeric, raw.categorical, y[splits["train"]],
            task.outputs_values, list(cfg.tabular.allow_leakage) if cfg.tabular else [], seed,
        )  # fmt: skip
    if not kind.tokenized:
        (out_dir / TOKENIZER_FILE).unlink(missing_ok=True)

    for stale in [*out_dir.glob("*_rows.parquet"), *out_dir.glob("*_files.txt"),
                  *out_dir.glob(f"{RECENT}_?.npy")]:  # fmt: skip
        stale.unlink()
    if dropped is not None:
        dropped.to_parquet(out_dir / f"{DROPPED}_rows.parquet", index=False)
    digest = hashlib.sha256()
    counts = {}
    for name, idx in splits.items():
        # Plain .npy, not np.savez: savez stamps its zip entries with the time, so
        # the same data would hash differently and DVC would rerun what follows.
        for part, values in (("x", x), ("y", y)):
            path = out_dir / f"{name}_{part}.npy"
            write_rows(path, values, idx)
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):  # 4 MiB at a time
                    digest.update(block)
        if raw.files:  # which file each row of an image folder came from
            names = np.asarray(raw.files)[idx]
            (out_dir / f"{name}_files.txt").write_text("".join(f"{f}\n" for f in names))
        if kind.row_table:
            rows = raw.frame.iloc[idx].reset_index(drop=True)
            rows.to_parquet(out_dir / f"{name}_rows.parquet", index=False)
        counts[name] = int(len(idx))
    shape = tuple(int(d) for d in x.shape[1:])
    x = raw.images = None  # the decoded pixels' map, before its file goes
    for scratch in [decoded, *out_dir.glob(f".*{DECODED}"), *out_dir.glob(".batch-*.npy")]:
        scratch.unlink(missing_ok=True)
    prepared = PreparedData(
        folder=out_dir,
        kind=raw.kind,
        counts=counts,
        classes=classes,
        input_shape=shape,
        version=digest.hexdigest()[:12],
        rejected=len(raw.rejected),
        dropped=0 if dropped is None else len(dropped),
        batches=tuple(b.id for b in chosen),
        task=task.name,
        task_reason=why,
        leakage=tuple(f["message"] for f in leakage),
    )
    # Each batch's rows held out in the recent split: the sorted indices within its span
    bounds = np.cumsum([n_ref, *sizes])
    held = np.diff(np.searchsorted(splits.get(RECENT, np.zeros(0, np.int64)), bounds))
    meta = {
        "source": cfg.source,
        "name": cfg.name,
        "kind": raw.kind,
        "task": task.name,
        "task_reason": why,  # data.tabular.task: auto, said: why this task
        "target": target,  # a regression's target scale (the net learns it so): None else
        "leakage": leakage,  # probable leakage (components/prepare/leakage.py)
        "counts": counts,
        "classes": classes,
        "input_shape": list(prepared.input_shape),
        # What the kind's encoder keeps for the service: images their pixel_max, tables
        # their schema, texts their tokenizer and its max_length
        "pixel_max": None,
        "schema": None,
        "text": None,
        **encoder,
        "rejected": [{"file": f, "reason": r} for f, r in raw.rejected],
        "dropped_rows": prepared.dropped,
        "origin": str(raw.origin) if raw.origin else None,
        "version": prepared.version,
        # What joined the reference data: each batch, and how many of its rows are held out
        # in the recent split
        "batches": [
            {
                "id": b.id,
                "rows": n,
                "sha256": b.sha256,
                "source": b.source,
                "arrived": b.arrived_iso,
                "recent": int(k),
            }
            for b, n, k in zip(chosen, sizes, held, strict=True)
        ],  # fmt: skip
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return prepared


def choose_task(cfg: DataConfig, raw: RawData) -> tuple[Task, str]:
    """The task of ``raw``'s label: a table's ``data.tabular.task`` (auto: regression for a
    numeric label of many distinct values), classification for every other source; and,
    where auto chose, why (the prepare summary says it)."""
    declared = cfg.tabular.task if cfg.tabular and raw.frame is not None else "classification"
    if declared == "regression":
        return REGRESSION, ""
    if declared == "classification" or raw.label_column not in getattr(raw.frame, "columns", []):
        return CLASSIFICATION, ""
    numeric, why = numeric_label(raw.frame[raw.label_column])
    return (REGRESSION if numeric else CLASSIFICATION), why


def target_scale(cfg: DataConfig, y: np.ndarray, train: np.ndarray, raw: RawData) -> dict:
    """A regression's target as the net learns it, fitted on the training split (``train``:
    its rows of ``y``): the declared transforms in order (``data.tabular.target_transform``),
    their shift and scale. ``log1p`` needs every label, of every split, above -1."""
    transforms = list(cfg.tabular.target_transform) if cfg.tabular else ["standardise"]
    t = np.asarray(y, dtype=np.float64)[train]
    if "log1p" in transforms:
        if (y <= -1).any():
            raise DataError(
                f"data.tabular.target_transform: log1p needs every label above"
                f" -1; {raw.label_column!r} goes down to {np.min(y):g}",
                raw.origin,
            )
        t = np.log1p(t)
    shift, scale = 0.0, 1.0
    if "standardise" in transforms and len(t):
        shift, scale = float(t.mean()), float(t.std()) or 1.0
    return {"label": raw.label_column, "transforms": transforms, "shift": shift, "scale": scale}


def _concat_frames(frames: list):
    import pandas as pd

    return pd.concat(frames, ignore_index=True) if frames else None


REFERENCE_ROWS = 10_000  # the drift reference kept of each prepared version's train split


def reference_file(ws, version: str) -> Path:
    """Where a sample of data version ``version``'s train split is kept: the reference the
    monitor measures drift against while a model trained on it is champion."""
    return ws.references / f"{version}.npy"


def keep_reference(ws, prepared: PreparedData, seed: int) -> Path:
    path = reference_file(ws, prepared.version)
    if not path.is_file():
        rows = RowFile(prepared.folder / "train_x.npy")
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.permutation(len(rows))[:REFERENCE_ROWS])
        path.parent.mkdir(parents=True, exist_ok=True)
        if data_kind(
            prepared.kind
        ).tokenized:  # the texts first: the ids file marks the sample complete
            texts = load_rows(prepared.folder, "train").iloc[pick].reset_index(drop=True)
            texts.to_parquet(reference_texts(path), index=False)
        np.save(path.with_suffix(".tmp.npy"), rows.take(pick))
        path.with_suffix(".tmp.npy").replace(path)
    return path


def pretrained_encoder(params):
    """What the model family of ``train.model`` reads its inputs with, where it brings its
    own (a pretrained model's tokenizer file and input limit); None: learnt here."""
    from components.core import families
    from components.core.kinds.sources import kind_of_source

    if params.train.model == "auto" or not kind_of_source(params.data).tokenized:
        return None  # an image model's processing is in its net (its preprocessor config)
    family = families.get(params.train.model)
    return family.tokenizer(params.train.net(family.name)) if family.tokenizer else None


def prepare_stage(params, ws) -> PreparedData:
    """Write the configured source's splits, with the accepted batches, into the workspace."""
    prepared = prepare(params.data, params.seed, ws.prepared, ws.quarantine, ws.root, ws.batches,
                       given=pretrained_encoder(params))  # fmt: skip
    keep_reference(ws, prepared, params.seed)
    return prepared
