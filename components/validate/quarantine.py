"""Quarantine: copies of what the gate rejected, with the reasons. Raw input is only ever read."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

from components.core.config import ValidateConfig
from components.core.kinds.gate import GateInput, expected_labels
from components.core.kinds.images import IMAGE_SUFFIXES
from components.core.messages import printable
from components.core.rawdata import DataError

# ---------------------------------------------------------------- quarantine and reports


def rejected_rows(
    gate: GateInput, cfg: ValidateConfig, reference: dict | None, faults_only: bool = False
):
    """Rows that break a row-level rule: a mask, and the reasons of the rows it marks.

    ``faults_only``: only what is wrong with a row by itself (a value out of range, a
    broken text, a label not allowed), not what it shares with others (duplicates,
    conflicting labels): the rows ``ingest.row_policy: reject_rows`` may leave out."""
    import pandas as pd

    t = gate.table
    reasons = pd.Series([""] * len(t), index=t.index, dtype=object)

    def flag(mask, why):
        mask = np.asarray(mask, dtype=bool)
        reasons[mask] = reasons[mask] + why + "; "

    for mask, why in gate.of.row_faults(gate, cfg, reference, faults_only):
        flag(mask, why)
    if gate.known is not None:  # a batch's rows the data holds already: nothing new
        flag(gate.known.reindex(t.index, fill_value=False), "row already in the data")
    label = gate.of.gate_label
    labels = expected_labels(cfg, reference)
    if labels:
        flag(~t[label].isin(labels), "label not allowed")
    mask = reasons != ""
    return mask.to_numpy(), reasons[mask].str.rstrip("; ")


def quarantine_batch(gate, failures, cfg, reference, root: Path) -> Path:
    """Copy what the gate rejected, with a reason file, into a new quarantine folder."""
    folder = _new_folder(root, gate.name)
    lines = [f"source: {gate.origin or gate.name}", "failed expectations:"]
    lines += [f"  - {f.describe()}" for f in failures]
    mask, reasons = rejected_rows(gate, cfg, reference) if len(gate.table) else ([], [])
    whole_file = not any(mask) and gate.origin is not None and gate.origin.is_file()
    if gate.of.row_table and any(mask):
        rows = gate.of.as_given(gate, mask).assign(_reason=reasons.to_numpy())
        rows.to_csv(folder / "rejected_rows.csv", index=False)
        lines.append(f"rejected {gate.of.noun}: {int(np.sum(mask))} (rejected_rows.csv,"
                     " reason per row)")  # fmt: skip
    elif gate.of.pixels and gate.files and any(mask):
        for file, why in zip(np.asarray(gate.files)[mask], reasons, strict=True):
            _copy_into(gate.origin / file, folder / "files" / file)
            lines.append(f"  {file}: {why}")
    if gate.rejected:
        for file, why in gate.rejected:
            _copy_into(gate.origin / file, folder / "files" / file)
            lines.append(f"  {file}: {why}")
    if whole_file:  # a table-level fault (too few rows, one class): hold the whole file
        _copy_into(gate.origin, folder / gate.origin.name)
    (folder / "reason.txt").write_text("\n".join(lines) + "\n")
    return folder


def quarantine_rows(gate: GateInput, mask, reasons, root: Path) -> Path:
    """Hold the rows a batch was accepted without (``ingest.row_policy: reject_rows``)."""
    folder = _new_folder(root, f"{gate.name}-rows")
    rows = gate.of.as_given(gate, mask).assign(
        _row=np.flatnonzero(mask), _reason=reasons.to_numpy()
    )
    rows.to_csv(folder / "rejected_rows.csv", index=False)
    (folder / "reason.txt").write_text(
        f"source: {gate.origin or gate.name}\naccepted without {int(np.sum(mask))} of"
        f" {len(gate.table)} rows (ingest.row_policy: reject_rows): rejected_rows.csv holds them,"
        " with the reason of each and its row number in the batch (from 0)\n"
    )
    return folder


def quarantine_unreadable(err: DataError, root: Path) -> Path | None:
    """Hold what could not be read at all, with the reason.

    Copied: a regular file given to validate, or a folder's loose image files (the
    images it holds, not in class folders). Nothing else of a folder was asked for:
    no other file, no link, no device is ever copied.
    """
    path = err.path
    if path is None or not (path.exists() or path.is_symlink()):
        return None
    folder = _new_folder(root, _safe_stem(path))
    size = ""
    if not err.copy:  # over a size cap, or a special file: its name, size and reason only
        with contextlib.suppress(OSError):
            size = f"size: {os.lstat(path).st_size:,} bytes (not copied)\n"
    elif path.is_symlink():  # what a link names is never read, not even to hold it
        pass
    elif path.is_dir():
        for file in path.iterdir():
            if file.suffix.lower() in IMAGE_SUFFIXES:
                _copy_into(file, folder / "files" / file.name)
    else:
        _copy_into(path, folder / path.name)
    (folder / "reason.txt").write_text(f"source: {printable(path)}\n{size}rejected: {err}\n")
    return folder


def _safe_stem(path: Path) -> str:
    """A quarantine folder's name from what was given: letters, digits and ``_.-`` only."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)[:60].strip(".") or "data"


def _new_folder(root: Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    folder, n = root / f"{stamp}-{name}", 1
    while folder.exists():
        folder, n = root / f"{stamp}-{name}-{n}", n + 1
    folder.mkdir(parents=True)
    return folder


def _copy_into(src: Path, dst: Path) -> None:
    if not src.is_file() or src.is_symlink():  # only regular files, never what a link names
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)  # a copy: the raw file stays as it was
