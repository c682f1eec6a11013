"""Accepted batches of new data: one folder each under ``data/batches/``, never changed after.

``mloop ingest`` and ``mloop harvest`` add them (components/ingest) after the data gate
passed them; the prepare stage joins the reference data (``data.source``) and the
batches inside ``data.batches.window``. A batch folder holds its data in one of three
formats, and ``batch.json``:

* ``table``: the table file as given (``rows.csv`` / ``rows.parquet``), or the rows
  harvested from the inference log (``rows.parquet``);
* ``images``: ``files/<class>/<image>``, the image files as given;
* ``arrays``: ``data.npz`` with ``x`` (samples on the source's pixel scale) and ``y``
  (labels): batches of the built-in digits or synthetic images, and images harvested
  from the inference log.

``batch.json`` records the id (``batch-0001``, in order of arrival), the arrival time,
the row count, the content hash (sha256 over the data files' names and bytes, checked
again whenever prepare reads the batch), where it came from and its class counts.
A batch is written in a scratch folder beside and renamed into place, under a lock,
so a reader never sees half of one; the same content is never added twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    from components.core.config import BatchesConfig

FORMATS = ("table", "images", "arrays")
RECORD = "batch.json"
REQUEST_IDS = "request_ids.txt"  # harvested batches: the logged requests the rows came from
EXCLUDED = "EXCLUDED"  # set aside by mloop data batches --exclude: why, and when


class BatchError(ValueError):
    """A batch cannot be added or read; the message names it and why."""


@dataclass(frozen=True)
class Batch:
    id: str
    arrived: float  # seconds since the epoch (UTC)
    rows: int
    sha256: str
    format: str
    source: str  # "ingest" or "harvest"
    origin: str  # the path given to ingest, or the inference log
    data: tuple[str, ...]  # the data files, relative to the folder
    classes: dict[str, float]  # label -> rows (a regression: values, min, max)
    folder: Path
    # Rows of the data file (from 0) the gate left out (ingest.row_policy: reject_rows),
    # held in quarantine with their reasons; prepare reads the batch without them.
    rejected: tuple[int, ...] = ()
    # Harvest writes only what its gate passed: the harvested rows (from 0) it held in
    # quarantine instead, which the data file does not hold.
    held: tuple[int, ...] = ()
    excluded: str | None = None  # why it was set aside (mloop data batches --exclude)

    @property
    def arrived_iso(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.arrived))

    def record(self) -> dict:
        out = asdict(self)
        out.pop("folder")
        out["data"] = list(self.data)
        out["rejected"] = list(self.rejected)
        out["held"] = list(self.held)
        out.pop("excluded")  # its own file (EXCLUDED): the record is never rewritten
        out["arrived_iso"] = self.arrived_iso
        return out


def content_hash(folder: Path, files: list[str]) -> str:
    """sha256 over each data file's relative name and bytes, in sorted order."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0")
        with open(Path(folder) / name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):  # 4 MiB at a time
                digest.update(block)
    return digest.hexdigest()


def read_record(folder: Path) -> Batch:
    path = Path(folder) / RECORD
    try:
        raw = json.loads(path.read_text())
        raw.pop("arrived_iso", None)
        raw["data"] = tuple(raw["data"])
        raw["rejected"] = tuple(raw.get("rejected", ()))
        raw["held"] = tuple(raw.get("held", ()))
        marker = Path(folder) / EXCLUDED
        excluded = (marker.read_text().strip() or "excluded") if marker.is_file() else None
        batch = Batch(**raw, folder=Path(folder), excluded=excluded)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise BatchError(f"{path}: not a readable batch record ({err})") from None
    if batch.format not in FORMATS or batch.id != Path(folder).name:
        raise BatchError(f"{path}: format {batch.format!r} or id {batch.id!r} does not fit")
    return batch


def list_batches(root: Path) -> list[Batch]:
    """Every accepted batch under ``root`` (``data/batches``), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("batch-"))
    return [read_record(p) for p in folders]


def in_window(batches: list[Batch], cfg: BatchesConfig, now: float | None = None) -> list[Batch]:
    """The batches ``data.batches.window`` keeps: all, the newest ``last``, or the last ``days``;
    never one set aside (``exclude``)."""
    batches = [b for b in batches if b.excluded is None]
    if cfg.window == "last":
        return batches[-cfg.last :]
    if cfg.window == "days":
        since = (time.time() if now is None else now) - cfg.days * 86400
        return [b for b in batches if b.arrived >= since]
    return list(batches)


def verify(batch: Batch) -> None:
    """Raise ``BatchError`` unless the batch's files still hash to what was recorded."""
    missing = [f for f in batch.data if not (batch.folder / f).is_file()]
    if missing:
        raise BatchError(f"{batch.folder}: data files missing: {missing}")
    if content_hash(batch.folder, list(batch.data)) != batch.sha256:
        raise BatchError(
            f"{batch.folder}: its files changed since it was accepted (content hash differs"
            f" from {batch.sha256[:12]}); a batch is never edited: remove it, ingest a new one"
        )


def add_batch(
    root: Path,
    lock: Path,
    write: Callable[[Path], list[str]],
    *,
    format: str,
    source: str,
    origin: str,
    labels: list,
    extra: Callable[[Path], None] | None = None,
    rejected: tuple[int, ...] = (),
    held: tuple[int, ...] = (),
) -> Batch:
    """Write a new batch: ``write(folder)`` puts the data files in and returns their names.

    Raises ``BatchError`` when a batch with the same content exists already.
    ``extra(folder)`` adds files that are no data (harvested request ids); ``labels`` are
    the rows kept, ``rejected`` the rows of the data files the gate left out, ``held`` the
    rows it left out that were never written (harvest).
    """

    from filelock import FileLock

    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    # Beside the batches, not inside: DVC hashes data/batches as prepare's dependency.
    scratch = Path(tempfile.mkdtemp(prefix=".batch-", dir=root.parent))
    try:
        files = write(scratch)
        sha = content_hash(scratch, files)
        if extra is not None:
            extra(scratch)
        Path(lock).parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock), timeout=120):
            existing = list_batches(root)
            same = [b.id for b in existing if b.sha256 == sha]
            if same:
                raise BatchError(f"the same content was accepted before, as {same[0]}")
            number = 1 + max((int(b.id.split("-")[1]) for b in existing), default=0)
            batch = Batch(
                id=f"batch-{number:04d}", arrived=time.time(), rows=len(labels), sha256=sha,
                format=format, source=source, origin=origin, data=tuple(sorted(files)),
                classes=label_counts(labels),
                folder=root / f"batch-{number:04d}", rejected=tuple(rejected), held=tuple(held),
            )  # fmt: skip
            (scratch / RECORD).write_text(json.dumps(batch.record(), indent=2) + "\n")
            root.mkdir(parents=True, exist_ok=True)
            os.rename(scratch, batch.folder)  # whole, at once
        return batch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # gone already unless something failed


def exclude(root: Path, batch_id: str, reason: str, lock: Path) -> Batch:
    """Set batch ``batch_id`` aside: no later run reads it, its files stay as accepted
    (``include`` takes it back). The reason is kept in its ``EXCLUDED`` file."""
    from filelock import FileLock

    batch = _named(root, batch_id)
    with FileLock(str(lock), timeout=120):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        scratch = batch.folder / f".{EXCLUDED}.{os.getpid()}"
        scratch.write_text(f"{stamp} {reason}\n")
        os.replace(scratch, batch.folder / EXCLUDED)
    return read_record(batch.folder)


def include(root: Path, batch_id: str, lock: Path) -> Batch:
    """Take a batch set aside back into the data the next run reads."""
    from filelock import FileLock

    batch = _named(root, batch_id)
    with FileLock(str(lock), timeout=120):
        (batch.folder / EXCLUDED).unlink(missing_ok=True)
    return read_record(batch.folder)


def _named(root: Path, batch_id: str) -> Batch:
    """The batch ``batch_id`` (``batch-0003``, or ``3``) of ``root``; BatchError if none."""
    name = f"batch-{int(batch_id):04d}" if batch_id.isdigit() else batch_id
    found = {b.id: b for b in list_batches(root)}
    if name not in found:
        known = ", ".join(found) or "none yet"
        raise BatchError(f"no batch {batch_id!r} in {root} (batches: {known})")
    return found[name]


def harvested_requests(batches: Path, quarantine: Path) -> set[str]:
    """Request ids a harvest took already: into a batch, or into quarantine."""
    return request_ids(batches) | request_ids(quarantine)


def request_ids(root: Path) -> set[str]:
    """The request ids every harvested batch (or quarantined harvest) under ``root`` came from."""
    taken: set[str] = set()
    root = Path(root)
    if root.is_dir():
        for path in root.glob(f"*/{REQUEST_IDS}"):
            taken.update(line for line in path.read_text().split() if line)
    return taken


def label_counts(labels: list) -> dict[str, int]:
    """A batch's labels as its record keeps them: each class's count; a regression's values
    (floats) as their count and range."""
    from collections import Counter

    if labels and all(isinstance(v, float) for v in labels):
        return {"values": len(labels), "min": min(labels), "max": max(labels)}
    return {str(k): int(v) for k, v in sorted(Counter(map(str, labels)).items())}
