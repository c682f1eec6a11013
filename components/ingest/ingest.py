"""``mloop ingest PATH``: a new batch of the data set, through the data gate, into ``data/batches``.

The batch (a CSV/Parquet file, an image folder, or a ``.npz`` of image arrays for the
built-in digits) is read under the data set's rules and gated against its reference
profile (``reports/profile-<name>.json``, written by the first run to pass). A bad
batch goes to ``quarantine/`` with its reason and nothing else changes; a good one
becomes the next batch of ``data/batches`` (``prepare.batches``). The input is copied
first, into a scratch folder beside the batches (no symbolic link followed, a link refused
by name), and the copy is what is read, gated, hashed and renamed into place: a file
still being written when it was picked up cannot be stored with bytes the gate never
saw. The input itself is only ever read. Under ``ingest.row_policy: reject_rows`` a
table or text batch whose only faults are a few single rows is accepted without them
(their row numbers in ``batch.json``, the rows with reasons in quarantine). The drop
folder ``data/incoming/`` is the unattended form:
``ingest_incoming`` gates each file or folder put there that it has not seen before
(by content hash, in ``.mloop/incoming.json``), so a retrain starts from what arrived.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from components.core.config import Params
from components.core.kinds import kind as data_kind
from components.core.kinds.images import IMAGE_SUFFIXES
from components.core.kinds.sources import kind_of_source, read_path, source_of
from components.core.messages import printable
from components.core.paths import Workspace
from components.core.rawdata import (
    DataError,
    RawData,
    refuse_link,
    refuse_oversize,
    refuse_special,
)
from components.core.records import write_json
from components.prepare.batches import Batch, BatchError, add_batch, content_hash
from components.validate.profile import load_profile, profile_path
from components.validate.quarantine import quarantine_unreadable
from components.validate.stage import run_gate
from components.validate.tables import conflict_policy, gate_input

log = logging.getLogger(__name__)


README = "README.md"  # the drop folder's own note, never a batch


class IngestError(ValueError):
    """The batch cannot be gated at all (no reference yet, a source it does not fit)."""


@dataclass(frozen=True)
class IngestResult:
    path: Path
    accepted: bool
    reason: str
    rows: int = 0
    batch: Batch | None = None
    quarantine: Path | None = None
    report: Path | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        if self.batch is not None:
            b = self.batch
            less = (f"; {len(b.rejected):,} faulty rows rejected, held in {self.quarantine}"
                    if b.rejected else "")  # fmt: skip
            return (f"{printable(self.path)}: ACCEPTED as {b.id} ({b.rows:,} rows, sha256"
                    f" {b.sha256[:12]}, arrived {b.arrived_iso}) in {self.seconds:.1f}s"
                    f"{less}")  # fmt: skip
        held = f"; quarantined in {self.quarantine}" if self.quarantine else ""
        return f"{printable(self.path)}: REJECTED: {self.reason}{held}"


def _kind_fits(raw: RawData, params: Params, path: Path) -> None:
    source, wanted = params.data.source, kind_of_source(params.data)
    if data_kind(raw.kind) is not wanted:
        what = {"tabular": "a CSV or Parquet table", "image": "images",
                "text": "a CSV or Parquet file of texts"}  # fmt: skip
        raise IngestError(
            f"{path}: holds {what[raw.kind]}; data.source {source} takes {what[wanted.name]}"
        )
    batch = source_of(params.data).batch
    if batch == "folder" and not Path(path).is_dir():
        raise IngestError(f"{path}: data.source {source} takes a folder of class folders")
    if batch == "arrays" and Path(path).is_dir():
        raise IngestError(f"{path}: data.source {source} takes a .npz of arrays x and y")


def _safe_name(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).stem)[:60] or "batch"


def gate_batch(raw: RawData, name: str, params: Params, ws: Workspace, new_rows: bool = True):
    """The data gate on one batch, against the data set's reference profile, under the
    ``ingest`` row policy. ``new_rows``: a row the data holds already is a fault (a file
    given again; harvested traffic may repeat the data's rows with their true labels)."""
    gate = gate_input(raw, name, conflicts=conflict_policy(params))
    gate.known = _already_in_data(gate, ws, params.gate) if new_rows else None
    reference = load_profile(profile_path(ws, params), gate)
    if reference is None:
        raise IngestError(
            "no reference profile yet: run the loop once (mloop run) so the data set has one;"
            " batches are gated against it"
        )
    reports = ws.reports / "ingest" / f"{time.strftime('%Y%m%dT%H%M%S')}-{name}"
    return run_gate(gate, params.gate, reference, reports, ws.quarantine, params.ingest)


def _already_in_data(gate, ws: Workspace, cfg):
    """The batch's rows that the data prepared last holds already, where joining them would
    take the data past ``validate.max_duplicate_share`` (the run's gate would then fail on
    duplicates); None where they would not, or nothing is compared (no prepared data,
    images). Rows that merely look alike, under the share the data may hold, are new data."""
    from components.core.kinds.gate import already_in
    from components.validate.tables import prepared_gate_input

    if not gate.of.row_table or not (ws.prepared / "meta.json").is_file():
        return None
    data = prepared_gate_input(ws)
    if data.of is not gate.of:
        return None
    known, repeats = already_in(gate.table, data.table)
    own = int(gate.table["_digest"].duplicated().sum()) if "_digest" in gate.table else 0
    after = (repeats + int(known.sum()) + own) / max(len(data.table) + len(gate.table), 1)
    return known if known.any() and after > cfg.max_duplicate_share else None


def _copy_file(src: Path, dst: Path) -> None:
    """Copy one regular file, never through a link (O_NOFOLLOW: a link swapped in after
    the check is refused by the kernel, not read)."""
    try:  # O_NONBLOCK: a pipe put in the link's place does not hang the open
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        raise DataError(f"cannot be read without following a link: {err.strerror}", src) from None
    with os.fdopen(fd, "rb") as source:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DataError("not a regular file", src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        with open(dst, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 22)


def stage(path: Path, into: Path, params: Params) -> Path:
    """A copy of ``path`` under ``into``, what the gate reads and the batch stores: a file
    as it is, or an image folder's class folders of images. A link is refused by name."""
    if path.name in ("", ".", ".."):
        raise DataError("name the file or folder itself, not '.' or '..'", path, copy=False)
    refuse_link(path)
    refuse_special(path)
    target = into / path.name
    if not path.is_dir():
        if not path.is_file():
            raise DataError("no such file or folder" if not path.exists() else
                            "not a regular file or folder", path)  # fmt: skip
        # Not copied past its cap (the read checks it again, a .npz's unpacked size too)
        setting = "max_npz_bytes" if path.suffix.lower() == ".npz" else "max_table_bytes"
        cap = getattr(params.ingest, setting)
        refuse_oversize(path, path.stat().st_size, cap, f"ingest.{setting}")
        _copy_file(path, target)
        return target
    target.mkdir()
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue
        refuse_link(entry)
        if not entry.is_dir():
            continue  # loose files are no class's: the read names what it expects
        (target / entry.name).mkdir()
        for file in sorted(entry.iterdir()):
            refuse_link(file)
            if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file():
                _copy_file(file, target / entry.name / file.name)
    return target


def ingest(path: Path, params: Params, ws: Workspace) -> IngestResult:
    """Gate ``path`` against the reference profile; accepted, it becomes the next batch."""
    start = time.perf_counter()
    path = Path(path)
    name = _safe_name(path)
    ws.batches.parent.mkdir(parents=True, exist_ok=True)
    # Beside the batches (one file system: the rename below is whole), not inside them.
    scratch = Path(tempfile.mkdtemp(prefix=".ingest-", dir=ws.batches.parent))
    try:
        try:
            copy = stage(path, scratch, params)
            raw = read_path(copy, params.data, limits=params.ingest)
        except DataError as err:
            err = _named_as_given(err, scratch / path.name, path)
            held = quarantine_unreadable(err, ws.quarantine)
            return IngestResult(path, False, str(err), quarantine=held)
        raw.origin = copy
        _kind_fits(raw, params, path)
        result = gate_batch(raw, name, params, ws)
        if not result.passed:
            return IngestResult(path, False, result.in_brief(), len(raw),
                                quarantine=result.quarantine,
                                report=result.html_report)  # fmt: skip
        return _store(path, copy, raw, result, ws, start)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _named_as_given(err: DataError, copy: Path, path: Path) -> DataError:
    """``err`` about the scratch copy, said of the input the user gave instead."""
    if err.path is None or not Path(err.path).is_relative_to(copy):
        return err
    where = path / Path(err.path).relative_to(copy)
    return DataError(err.message.replace(str(copy), str(path)), where)


def _store(path: Path, copy: Path, raw: RawData, result, ws: Workspace, start: float):
    """The gated copy, renamed into the next batch folder (the same bytes: no second copy)."""
    import numpy as np

    def write(folder: Path) -> list[str]:
        if copy.is_dir():  # an image folder: the files the read took
            os.rename(copy, folder / "files")
            return [f"files/{f}" for f in raw.files]
        batch_format = data_kind(raw.kind).batch_format
        target = ("data" if batch_format == "arrays" else "rows") + path.suffix.lower()
        os.rename(copy, folder / target)
        return [target]

    left_out = result.rejected_rows
    labels = np.delete(np.asarray(raw.labels, dtype=object), list(left_out)) if left_out else (
        raw.labels)  # fmt: skip
    fmt = "images" if copy.is_dir() else data_kind(raw.kind).batch_format
    try:
        batch = add_batch(ws.batches, ws.batch_lock, write, format=fmt, source="ingest",
                          origin=printable(path.resolve()), labels=list(labels),
                          rejected=left_out)  # fmt: skip
    except BatchError as err:
        return IngestResult(path, False, str(err), len(raw), report=result.html_report)
    log.info(f"ingest: {path} accepted as {batch.id} ({batch.rows:,} rows)")
    return IngestResult(path, True, "passed the data gate", batch.rows, batch,
                        quarantine=result.quarantine, report=result.html_report,
                        seconds=time.perf_counter() - start)  # fmt: skip


# ---------------------------------------------------------------- the drop folder


@dataclass(frozen=True)
class IncomingResult:
    results: list[IngestResult] = field(default_factory=list)
    skipped: int = 0  # seen before
    waiting: str | None = None  # why nothing was read yet

    @property
    def accepted(self) -> list[Batch]:
        return [r.batch for r in self.results if r.batch is not None]

    def summary(self) -> str:
        if self.waiting:
            return f"drop folder: {self.waiting}"
        rejected = [r for r in self.results if not r.accepted]
        return (f"drop folder: {len(self.accepted)} batches accepted, {len(rejected)} rejected,"
                f" {self.skipped} seen before")  # fmt: skip


def _item_hash(item: Path) -> str:
    if item.is_dir():
        files = [str(p.relative_to(item)) for p in sorted(item.rglob("*"))
                 if p.is_file() and not p.is_symlink()]  # fmt: skip
        return content_hash(item, files)
    return content_hash(item.parent, [item.name])


def ingest_incoming(params: Params, ws: Workspace) -> IncomingResult:
    """Ingest each file or folder of ``data/incoming/`` not seen before; a bad one is
    quarantined with its reason and the others go on. The drop folder is only read:
    what was seen is remembered by content hash in ``.mloop/incoming.json``."""
    folder = ws.incoming
    if not folder.is_dir():
        return IncomingResult()
    if not profile_path(ws, params).is_file():
        items = [p for p in folder.iterdir() if not p.name.startswith(".") and p.name != README]
        return IncomingResult(
            waiting=f"{len(items)} items wait for the data set's reference"
            " profile (the first run's data sets it)"
            if items
            else None
        )
    ledger_file = ws.incoming_ledger
    ledger = json.loads(ledger_file.read_text()) if ledger_file.is_file() else {}
    results, skipped = [], 0
    for item in sorted(folder.iterdir()):
        if item.name.startswith(".") or item.name == README:
            continue
        if item.is_symlink():  # never followed: it could name anything on the machine
            log.warning(
                f"ingest: {printable(item)} is a symbolic link: not read (copy the data in)"
            )
            continue
        try:  # a FIFO would hang the hash below, a device would be read whole
            refuse_special(item)
        except DataError as err:
            log.warning(f"ingest: {err}")
            continue
        digest = _item_hash(item)
        if digest in ledger:
            skipped += 1
            continue
        try:
            result = ingest(item, params, ws)
        except IngestError as err:  # a batch that fits no data set here: held, not fatal
            unfit = DataError(str(err))
            unfit.path = item
            result = IngestResult(
                item, False, str(err), quarantine=quarantine_unreadable(unfit, ws.quarantine)
            )
        log.info(f"ingest: {result.summary()}")
        results.append(result)
        ledger[digest] = {
            "name": printable(item.name),
            "seen": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "batch": result.batch.id if result.batch else None,
            "quarantine": str(result.quarantine) if result.quarantine else None,
            "reason": result.reason,
        }  # fmt: skip
        write_json(ledger_file, ledger)
    return IncomingResult(results, skipped)
