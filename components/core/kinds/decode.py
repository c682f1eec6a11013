"""Image files to pixels: one function for the prepare stage and the service.

``decode`` turns one PNG/JPEG (a path or bytes) into 8-bit pixels of the configured
size and colour mode: (H, W) for grayscale, (3, H, W) for RGB, uint8. The prepare
stage decodes a folder with it in parallel processes, straight into a ``.npy`` file
(``decode_files``), so memory holds a bounded working set whatever the folder's
size; the service decodes uploads with it, so served and trained pixels come from
the same code (no training/serving skew). Faults of one file raise
``ImageRejected`` with the reason; the caller quarantines the file or answers 4xx.
"""

from __future__ import annotations

import io
import os
import stat
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from components.core.splits import RowFile, npy_header

COLOR_MODES = {"grayscale": ("L", 1), "rgb": ("RGB", 3)}
WIDE_GRAY = {"I", "I;16", "I;16B", "I;16L", "F"}  # single-channel modes beyond 8 bits
CHUNK = 512  # files per task of the decoding pool


class ImageRejected(ValueError):
    """One image cannot be used; the message says why."""


def pixel_shape(size: tuple[int, int], color: str) -> tuple[int, ...]:
    return tuple(size) if color == "grayscale" else (3, *size)


def decode(
    source: Path | bytes, size: tuple[int, int], color: str, max_pixels: int | None = None
) -> np.ndarray:
    """One image file as uint8 pixels of ``size`` (height, width) in ``color``.

    ``max_pixels`` refuses an image whose header declares more pixels, before any
    pixel is decoded (a decompression bomb is a small file with a huge header); PIL's
    own bomb limit holds besides. Palette and 1-bit images become grayscale; any
    other mode than the one configured is refused, never converted silently.
    """
    from PIL import Image, UnidentifiedImageError

    want, channels = COLOR_MODES[color]
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            if img.format not in ("PNG", "JPEG"):
                raise ImageRejected(f"a {img.format} image; PNG or JPEG expected")
            width, height = img.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageRejected(
                    f"{width}x{height} pixels is more than the {max_pixels:,} accepted"
                )
            img.load()
            if img.mode in WIDE_GRAY:
                raise ImageRejected(f"{img.mode} pixels (beyond 8 bits); 8-bit images expected")
            if img.mode != want and not (want == "L" and img.mode in ("P", "1")):
                raise ImageRejected(
                    f"{len(img.getbands())} channel(s) ({img.mode}); expected {channels} ({color})"
                )
            pixels = np.asarray(img.convert(want).resize(size[::-1]), dtype=np.uint8)
    except Image.DecompressionBombError as err:
        raise ImageRejected(f"refused as a decompression bomb: {err}") from None
    except UnidentifiedImageError:
        raise ImageRejected("corrupt or unreadable image: not a PNG or JPEG file") from None
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, ImageRejected):
            raise
        raise ImageRejected(f"corrupt or unreadable image: {err}") from None
    return pixels if channels == 1 else pixels.transpose(2, 0, 1)


def _decode_chunk(task: tuple[str, list[str], tuple[int, int], str]):
    """Decode a chunk of files in a pool worker: (pixels of the good ones, [(index, why)])."""
    root, files, size, color = task
    good, bad, keep = [], [], []
    for i, rel in enumerate(files):
        path = Path(root) / rel
        try:
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):  # it may point anywhere: never read or copied
                raise ImageRejected("a symbolic link; only regular image files are read")
            if not stat.S_ISREG(info.st_mode):  # a pipe would block the read for ever
                raise ImageRejected("not a regular file")
            if info.st_size == 0:
                raise ImageRejected("zero-byte image file")
            good.append(decode(path, size, color))
            keep.append(i)
        except ImageRejected as err:
            bad.append((i, str(err)))
    shape = (0, *pixel_shape(size, color))
    return (np.stack(good) if good else np.zeros(shape, np.uint8)), keep, bad


def decode_files(
    root: Path, files: list[str], size: tuple[int, int], color: str, out: Path,
    workers: int | None = None, progress=None,
) -> tuple[RowFile, list[int], list[tuple[str, str]]]:  # fmt: skip
    """Decode ``root/files`` in parallel into the ``.npy`` file ``out`` (uint8).

    Returns the file as a ``RowFile`` (the good images in order, read a block at a
    time), the indices into ``files`` of the good ones, and ``(file, reason)`` for the
    others. Written with plain writes, a chunk at a time: memory holds the chunks in
    flight, not the folder. ``progress(done, total)`` is called as chunks finish.
    """
    shape = pixel_shape(size, color)
    out.parent.mkdir(parents=True, exist_ok=True)
    tasks = [(str(root), files[s : s + CHUNK], size, color) for s in range(0, len(files), CHUNK)]
    kept, rejected = [], []
    workers = workers or min(len(tasks), os.cpu_count() or 1)
    with open(out, "wb") as fh, ProcessPoolExecutor(max(1, workers)) as pool:
        _header(fh, len(files), shape)  # rewritten with the count of good images at the end
        # map keeps the order: the pixels land in file order, whatever finished first
        for t, (pixels, keep, bad) in enumerate(pool.map(_decode_chunk, tasks)):
            fh.write(pixels.tobytes())
            kept += [t * CHUNK + i for i in keep]
            rejected += [(files[t * CHUNK + i], why) for i, why in bad]
            if progress is not None:
                progress(min((t + 1) * CHUNK, len(files)), len(files))
        end = fh.tell()
        fh.seek(0)
        if _header(fh, len(kept), shape) != _header(io.BytesIO(), len(files), shape):
            raise RuntimeError(f"{out}: the header changed length")  # same digits or fewer
        fh.seek(end)
    return RowFile(out), kept, rejected


def _header(fh, rows: int, shape: tuple[int, ...]) -> int:
    """Write a uint8 ``.npy`` header for ``rows`` rows; returns the position after it."""
    return npy_header(fh, np.uint8, (rows, *shape))


class Progress:
    """``progress(done, total)`` that logs a line at most every ``every`` seconds."""

    def __init__(self, log, what: str, every: float = 5.0) -> None:
        self.log, self.what, self.every = log, what, every
        self.start = self.last = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self.last >= self.every or done == total:
            rate = done / max(now - self.start, 1e-9)
            self.log.info(f"  {self.what}: {done:,}/{total:,} ({100 * done / total:.0f}%,"
                          f" {rate:,.0f}/s)")  # fmt: skip
            self.last = now
