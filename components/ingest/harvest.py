"""``mloop harvest``: labelled production traffic becomes a batch, through the same gate.

Predictions the service logged and that received their true labels (``POST
/feedback``) are read from the inference log with their inputs, less the requests
an earlier harvest took (each harvested batch, and each quarantined harvest, keeps
``request_ids.txt``: the requests its rows came from, so none is harvested twice). They
are gated against the reference profile like any batch: accepted, they become the next
batch of ``data/batches``; rejected, they go to quarantine with the reason. Inputs are
in the log only while ``MLOOP_LOG_INPUTS`` is on; labelled predictions without them are
counted and named, never turned into an empty batch. Each label names its labeller
(the token's name, ``core/credentials.py``); ``ingest.harvest_sources`` takes only
the chosen labellers' labels.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.core import inference_log
from components.core.config import Params
from components.core.kinds import kind as data_kind
from components.core.kinds.encoding import TableEncoding
from components.core.paths import Workspace
from components.core.rawdata import RawData
from components.core.settings import settings
from components.core.splits import load_meta
from components.ingest.ingest import IngestError, gate_batch
from components.prepare.batches import (
    REQUEST_IDS,
    Batch,
    BatchError,
    add_batch,
    harvested_requests,
)
from components.validate.profile import profile_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HarvestResult:
    batch: Batch | None
    reason: str
    labelled: int = 0  # labelled predictions not harvested before
    without_inputs: int = 0  # of those, logged with no inputs (MLOOP_LOG_INPUTS off)
    other_shape: int = 0  # served by a model whose inputs had another shape
    requests: int = 0
    quarantine: Path | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        notes = []
        if self.without_inputs:
            notes.append(f"{self.without_inputs} labelled predictions kept no inputs"
                         " (MLOOP_LOG_INPUTS was off): they cannot be learnt from")  # fmt: skip
        if self.other_shape:
            notes.append(f"{self.other_shape} came from a model with other inputs")
        tail = "".join(f"; {n}" for n in notes)
        if self.batch is None:
            held = f"; quarantined in {self.quarantine}" if self.quarantine else ""
            return f"harvest: {self.reason}{tail}{held}"
        b = self.batch
        held = f"; {len(b.held):,} rows held by the gate in {self.quarantine}" if b.held else ""
        return (f"harvest: {b.rows:,} labelled predictions of {self.requests:,} requests"
                f" accepted as {b.id} in {self.seconds:.1f}s{held}{tail}")  # fmt: skip


def log_file(ws: Workspace) -> Path | None:
    """The inference log the service writes (None: logging is off)."""
    configured = settings().inference_log
    if inference_log.is_off(configured):
        return None
    return Path(configured or ws.inference_log)


def pending(ws: Workspace, inputs: bool = True):
    """The labelled predictions no harvest took yet (``inference_log.labelled``: their
    inputs too, with ``inputs``), or None while there is no log."""
    path = log_file(ws)
    if path is None or not path.is_file():
        return None
    return inference_log.labelled(path, harvested_requests(ws.batches, ws.quarantine), inputs)


def _labels(values, classes: list) -> np.ndarray:
    if not classes:  # a regression: the true values, as numbers
        return np.asarray([float(v) for v in values], dtype=np.float64)
    if all(isinstance(c, int) for c in classes):
        return np.asarray([int(v) for v in values], dtype=np.int64)
    return np.asarray(values, dtype=str)


def text_rows(inputs, labels: np.ndarray, meta: dict, origin: Path) -> RawData:
    """Logged texts (UTF-8) and their labels as a text batch, in the data set's columns."""
    import pandas as pd

    column, label = meta["text"]["column"], meta["text"]["label"]
    frame = pd.DataFrame({column: [bytes(b).decode("utf-8", "replace") for b in inputs],
                          label: labels.astype(str)})  # fmt: skip
    return RawData(kind="text", labels=labels.astype(str), frame=frame, label_column=label,
                   text_column=column, origin=origin)  # fmt: skip


def harvest(params: Params, ws: Workspace) -> HarvestResult:
    """Gate the labelled predictions not harvested yet; accepted, they are the next batch."""
    import json

    start = time.perf_counter()
    path = log_file(ws)
    if path is None:
        return HarvestResult(None, "the inference log is off (MLOOP_INFERENCE_LOG=off)")
    rows = pending(ws)
    if rows is None:
        return HarvestResult(None, f"no inference log at {path} yet (mloop serve writes it)")
    sources = params.ingest.harvest_sources
    if sources and len(rows):  # only the chosen labellers' labels (the others wait)
        rows = rows[rows["label_source"].isin(sources)].reset_index(drop=True)
    if not len(rows):
        only = f" from labellers {sources} (ingest.harvest_sources)" if sources else ""
        return HarvestResult(None, f"no labelled predictions{only} since the last harvest")
    try:
        meta = load_meta(ws.prepared)
    except FileNotFoundError:
        return HarvestResult(None, "no prepared data yet: run the loop once (mloop run)")
    shape = tuple(meta["input_shape"])
    size = rows["size"].to_numpy()
    blind = size == 0
    kind = data_kind(meta["kind"])
    text = kind.tokenized  # the log keeps each text as UTF-8, of any length
    other = np.zeros(len(rows), bool) if text else ~blind & (size != int(np.prod(shape)) * 4)
    usable = rows[~blind & ~other].reset_index(drop=True)
    counts = dict(labelled=len(rows), without_inputs=int(blind.sum()), other_shape=int(other.sum()))
    if not len(usable):
        why = "no labelled prediction kept its inputs: set MLOOP_LOG_INPUTS=true (the default)"
        return HarvestResult(None, f"nothing to harvest: {why}", **counts)
    if len(usable) < params.gate.min_rows:
        return HarvestResult(None, f"waiting: {len(usable)} labelled predictions with inputs,"
                                   f" validate.min_rows {params.gate.min_rows} make a batch",
                             **counts)  # fmt: skip
    labels = _labels(usable["label"], meta["classes"])
    if text:
        raw = text_rows(usable["inputs"], labels, meta, path)
    else:
        x = np.frombuffer(b"".join(usable["inputs"]), np.float32).reshape(len(usable), *shape)
        if kind.pixels:
            raw = RawData(kind="image", labels=labels, images=x.copy(),
                          pixel_max=meta["pixel_max"], origin=path)  # fmt: skip
        else:
            columns = json.loads(profile_path(ws, params).read_text())["columns"]
            frame = TableEncoding.from_schema(meta["schema"]).decode(x, labels)[columns]
            raw = RawData(kind="tabular", labels=labels.astype(str), frame=frame,
                          label_column=meta["schema"]["label"],
                          numeric=meta["schema"]["numeric"],
                          categorical=list(meta["schema"]["categorical"]),
                          missing=meta["schema"].get("missing", {}), origin=path)  # fmt: skip
    ids = sorted(set(usable["request_id"]))
    listing = "".join(f"{i}\n" for i in ids)
    try:
        result = gate_batch(raw, "harvest", params, ws, new_rows=False)
    except IngestError as err:
        return HarvestResult(None, str(err), **counts)
    if not result.passed:
        (result.quarantine / REQUEST_IDS).write_text(listing)  # taken: not harvested again
        return HarvestResult(None, f"rejected by the data gate: {result.in_brief()}",
                             requests=len(ids), quarantine=result.quarantine,
                             **counts)  # fmt: skip

    # Only what the gate passed is stored (the rows it held are in quarantine, with their
    # reasons, and numbered in batch.json's ``held``): no later run reads a refused label.
    held = result.rejected_rows
    kept = np.setdiff1d(np.arange(len(labels)), np.asarray(held, dtype=np.int64))

    def write(folder: Path) -> list[str]:
        if kind.batch_format == "arrays":
            np.savez(folder / "data.npz", x=x[kept], y=labels[kept])
            return ["data.npz"]
        raw.frame.iloc[kept].to_parquet(folder / "rows.parquet", index=False)
        return ["rows.parquet"]

    try:
        batch = add_batch(
            ws.batches, ws.batch_lock, write, format=kind.batch_format,
            source="harvest", origin=str(path), labels=list(labels[kept]), held=held,
            extra=lambda folder: (folder / REQUEST_IDS).write_text(listing),
        )  # fmt: skip
    except BatchError as err:
        return HarvestResult(None, str(err), requests=len(ids), **counts)
    log.info(f"harvest: {batch.rows:,} labelled predictions accepted as {batch.id}")
    return HarvestResult(batch, "accepted", requests=len(ids), seconds=time.perf_counter() - start,
                         quarantine=result.quarantine if held else None, **counts)  # fmt: skip
