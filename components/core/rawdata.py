"""What a data source holds as read (``RawData``), and the error of input that cannot be used.

Readers only read: raw input is never modified, and no symbolic link is followed (a link
where data is read could name anything on the machine).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.core.messages import printable


class DataError(ValueError):
    """The input cannot be used at all; the message names the fault and the file."""

    def __init__(self, message: str, path: Path | None = None, copy: bool = True) -> None:
        self.path = path
        self.message = message  # without the path
        self.quarantine: Path | None = None  # where a copy of the rejected input was put
        # Quarantine holds a copy of the input, unless holding it costs more than refusing
        # it did (over a size cap, or a special file): then its name, size and reason only
        self.copy = copy
        super().__init__(f"{printable(path)}: {message}" if path else message)


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
        raise DataError(f"{size:,} bytes, over the {max_bytes:,} that {setting} accepts", path,
                        copy=False)  # fmt: skip


# File systems whose files are the kernel's, not data: /proc/self/environ is a "regular"
# file of size 0 that reads a process's secrets; a device or a FIFO is refused by its mode.
PSEUDO_FILE_SYSTEMS = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "debugfs", "tracefs", "securityfs", "cgroup",
    "cgroup2", "configfs", "bpf", "pstore", "efivarfs", "fusectl", "mqueue", "hugetlbfs",
    "binfmt_misc",
})  # fmt: skip


def refuse_special(path: Path) -> None:
    """Raise ``DataError`` unless ``path`` (not followed) is a regular file or a folder on a
    file system of data: devices, FIFOs, sockets and the kernel's files are refused by type,
    before a byte of them is read."""
    import stat

    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return  # nothing there: the read says so
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
        raise DataError("not a regular file or folder (a device, a FIFO or a socket): never"
                        " read", path, copy=False)  # fmt: skip
    fs = _file_system(path)
    if fs in PSEUDO_FILE_SYSTEMS:
        raise DataError(f"a file of the kernel's {fs} file system, not data: never read", path,
                        copy=False)  # fmt: skip


def _file_system(path: Path) -> str | None:
    """The type of the file system ``path`` lies on (/proc/self/mountinfo), or None."""
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    target = os.path.realpath(os.path.abspath(path))
    best, found = "", None
    for line in mounts:
        fields = line.split(" - ")
        if len(fields) != 2:
            continue
        point = fields[0].split()[4].encode().decode("unicode_escape")
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) > len(
            best
        ):
            best, found = point, fields[1].split()[0]
    return found
