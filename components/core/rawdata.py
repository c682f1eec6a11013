"""What a data source holds as read (``RawData``), and the error of input that cannot be used.

Readers only read: raw input is never modified, and no symbolic link is followed (a link
where data is read could name anything on the machine).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


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
