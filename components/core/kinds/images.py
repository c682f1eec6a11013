"""The image kind: the built-in digits, image folders, ``.npz`` arrays and synthetic images.

Faults of single images (corrupt, zero bytes, wrong channel count) are returned as
rejections, for the gate to report and quarantine; faults that make a whole input unusable
raise ``DataError``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.core.kinds.base import (
    BODY_OVERHEAD,
    BYTES_PER_VALUE,
    MAX_BATCH,
    Refused,
    check_batch,
    drifted,
)
from components.core.kinds.image_checks import ImageChecks
from components.core.rawdata import DataError, RawData, refuse_link, refuse_oversize

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    from components.core.config import DataConfig, Params, SyntheticSource

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def read_digits() -> RawData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return RawData(
        kind="image",
        labels=digits.target.astype(np.int64),
        images=digits.images.astype(np.float32),
        pixel_max=16.0,
    )


def synthetic_images(cfg: SyntheticSource, seed: int) -> RawData:
    """Class-patterned images with gaussian noise, ``shift`` added to every pixel."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, cfg.classes, size=cfg.samples)
    size = cfg.image_size
    patterns = rng.uniform(0, 200, size=(cfg.classes, size, size)).astype(np.float32)
    images = np.empty((cfg.samples, size, size), dtype=np.float32)
    for start in range(0, cfg.samples, 200_000):
        end = min(start + 200_000, cfg.samples)
        noise = rng.normal(0, cfg.noise, size=(end - start, size, size)).astype(np.float32)
        images[start:end] = np.clip(patterns[labels[start:end]] + noise + cfg.shift, 0, 255)
    return RawData(kind="image", labels=labels.astype(np.int64), images=images, pixel_max=255.0)


def read_image_folder(
    path: Path, size: tuple[int, int], color: str, out: Path | None = None
) -> RawData:
    """Read ``path/<class>/<image>``; each image resized to ``size`` (height, width).

    The pixels are decoded in parallel processes (``images.decode_files``) into the
    uint8 ``.npy`` file ``out`` (a temporary file when None, removed with the RawData)
    and come back as a ``RowFile``, read a block at a time: the folder may be larger
    than memory.
    """
    import logging
    import tempfile

    from components.core.kinds.decode import Progress, decode_files, pixel_shape

    path = Path(path)
    refuse_link(path)
    if not path.is_dir():
        raise DataError("no such folder", path)
    entries = [p for p in sorted(path.iterdir()) if not p.name.startswith(".")]
    for entry in entries:
        refuse_link(entry)  # a class folder linked elsewhere is never read
    classes = [p.name for p in entries if p.is_dir()]
    if not classes:
        raise DataError("no class sub-folders: expected one folder of images per class", path)
    files, labels = [], []
    for label in classes:
        found = 0
        for entry in sorted(os.scandir(path / label), key=lambda e: e.name):
            if Path(entry.name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            # A linked image is listed and rejected by the decoder, never opened.
            if not entry.is_dir(follow_symlinks=False):
                files.append(f"{label}/{entry.name}")
                labels.append(label)
                found += 1
        if not found:
            raise DataError(
                f"class folder {label!r} holds no {'/'.join(sorted(IMAGE_SUFFIXES))} image:"
                " every class needs images (remove the folder, or add its images)",
                path,
            )
    scratch = None
    if out is None:
        scratch = tempfile.TemporaryDirectory(prefix="mloop-images-")
        out = Path(scratch.name) / "images.npy"
    log = logging.getLogger(__name__)
    log.info(f"decoding {len(files):,} images from {path} ({os.cpu_count()} processes)")
    images, kept, rejected = decode_files(
        path, files, tuple(size), color, out, progress=Progress(log, "images read")
    )
    return RawData(
        kind="image",
        labels=np.asarray(labels, dtype=object)[kept].astype(str),
        images=images if len(kept) else np.zeros((0, *pixel_shape(size, color)), np.uint8),
        files=[files[i] for i in kept],
        rejected=rejected,
        pixel_max=255.0,
        origin=path,
        scratch=scratch,  # the temporary file lives as long as the RawData
    )


def npz_bytes(path: Path) -> int:
    """What a ``.npz``'s arrays take once loaded, from the zip's directory and each array's
    header, before any array is read: the larger of the entry's stated size and the bytes
    its header's shape asks numpy to allocate (a small file can claim a huge array)."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            declared = 0
            with archive.open(info) as entry:
                fmt = np.lib.format
                try:
                    version = fmt.read_magic(entry)
                except ValueError:  # no .npy entry: np.load refuses it
                    version = None
                if version is not None:
                    read = {(1, 0): fmt.read_array_header_1_0,
                            (2, 0): fmt.read_array_header_2_0}.get(version)  # fmt: skip
                    if read is None:
                        raise DataError(f"{info.filename}: .npy format {version} is not read"
                                        " here (1.0 and 2.0 are)", Path(path))  # fmt: skip
                    shape, _, dtype = read(entry)
                    declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            total += max(info.file_size, declared)
    return total


def read_arrays(path: Path, pixel_max: float, max_bytes: int | None = None) -> RawData:
    """A ``.npz`` file of images ``x`` (N x H x W or N x C x H x W, on the source's pixel
    scale) and labels ``y``: a batch of the built-in digits or of synthetic images.
    ``max_bytes`` (ingest.max_npz_bytes) caps its arrays' size, checked before loading."""
    path = Path(path)
    refuse_link(path)
    try:
        if max_bytes is not None:
            refuse_oversize(path, npz_bytes(path), max_bytes,
                            "ingest.max_npz_bytes (decompressed)")  # fmt: skip
        with np.load(path, allow_pickle=False) as npz:
            if not {"x", "y"} <= set(npz.files):
                raise DataError(f"expected arrays x and y, found {sorted(npz.files)}", path)
            x, y = npz["x"], npz["y"]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # pickled objects too
        raise DataError(f"not a readable .npz of arrays x and y: {err}", path) from None
    if x.ndim not in (3, 4) or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"x must be numbers shaped N x H x W or N x C x H x W, got {x.shape}", path)
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"y must hold one label per image: {len(x)} images, y {y.shape}", path)
    if y.dtype.kind not in "iuU":
        raise DataError(f"labels must be whole numbers or text, got {y.dtype}", path)
    labels = y.astype(np.int64) if y.dtype.kind in "iu" else y.astype(str)
    return RawData(kind="image", labels=labels, images=x.astype(np.float32), pixel_max=pixel_max,
                   origin=path)  # fmt: skip


class Images(ImageChecks):
    name, noun, route, batch_format, row_table = "image", "images", "/predict", "arrays", False
    family = "cnn"
    pixels, report_note = True, "Images: the per-image statistics."
    logged = drifting = ("mean", "std", "min", "max", "ink")  # of each image's pixels

    def read_batch(self, batch, cfg: DataConfig, reference: RawData, images_out: Path) -> RawData:
        folder = batch.folder
        if batch.format == "table":
            raise DataError(f"batch {batch.id} is a table; the data set holds images", folder)
        if batch.format == "images":
            if cfg.images is None:
                raise DataError(f"batch {batch.id} is an image folder; data.source is {cfg.source}")
            raw = read_image_folder(folder / "files", cfg.images.size, cfg.images.color,
                                    images_out)  # fmt: skip
        else:
            raw = read_arrays(folder / batch.data[0], reference.pixel_max)
        if tuple(raw.images.shape[1:]) != tuple(reference.images.shape[1:]):
            raise DataError(
                f"batch {batch.id}: images shaped {tuple(raw.images.shape[1:])}, the data set's"
                f" {tuple(reference.images.shape[1:])}",
                folder,
            )
        if np.issubdtype(np.asarray(reference.labels).dtype, np.integer):
            try:
                raw.labels = np.asarray(raw.labels).astype(np.int64)
            except ValueError:
                raise DataError(f"batch {batch.id}: labels are not whole numbers",
                                folder) from None  # fmt: skip
        else:
            raw.labels = np.asarray(raw.labels).astype(str)
        return raw

    def encode(self, raw: RawData, train_idx: np.ndarray, cfg: DataConfig, out_dir: Path,
               previous: dict | None, given=None) -> tuple[np.ndarray, dict]:  # fmt: skip
        """The pixels as read (the network scales them by ``pixel_max``, which it keeps)."""
        return raw.images, {"pixel_max": raw.pixel_max}

    def traffic(self, prepared: Path, meta: dict, fault: str, params: Params):
        """The test split's images, changed by ``fault`` in pixel units, and their labels."""
        from components.core.splits import load_split, pixel_scale

        test = load_split(prepared, "test")
        rng = np.random.default_rng(params.seed)
        return drifted(test.x, fault, params.monitor, pixel_scale(params, meta), rng), test.y

    def request(self, images, shape: tuple[int, ...], pixel_max: float) -> np.ndarray:
        """A request's ``images`` (one image or a list of them, numbers shaped as the
        training images, within [0, pixel_max]) as the model's input."""
        want = "x".join(map(str, shape))
        try:
            x = np.asarray(images, dtype=np.float32)
        except OverflowError:  # an integer past float range
            raise Refused("images contain a number outside the float32 range") from None
        except (TypeError, ValueError):
            raise Refused(f"images must be numbers shaped {want} or N x {want}") from None
        if x.ndim == len(shape):
            x = x[None]
        if x.ndim != len(shape) + 1 or x.shape[1:] != tuple(shape):
            raise Refused(f"images must be shaped {want} or N x {want}, got {list(x.shape)}")
        check_batch(len(x))
        if not np.isfinite(x).all():
            raise Refused("images contain NaN or infinite values")
        if x.min() < 0 or x.max() > pixel_max:
            raise Refused(f"pixel values must lie in [0, {pixel_max:g}]")
        return x

    def body_limit(self, meta: dict, max_file_bytes: int) -> int:
        """Its largest batch as numbers; for a model trained on image files, at least one
        file of ``max_file_bytes`` (MLOOP_MAX_FILE_BYTES) in base64."""
        pixels = MAX_BATCH * int(np.prod(meta["input_shape"])) * BYTES_PER_VALUE + BODY_OVERHEAD
        if meta.get("image_files"):
            return max(pixels, -(-max_file_bytes // 3) * 4 + BODY_OVERHEAD)
        return pixels


IMAGES = Images()
