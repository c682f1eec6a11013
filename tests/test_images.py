"""Image folders at scale: decoded in parallel processes into uint8 splits read memory-mapped,
with one decoding function for the prepare stage and the service; bad files are refused
with their reasons."""

import os

import numpy as np
import pytest
from PIL import Image

from components.core.kinds.decode import ImageRejected, decode, decode_files
from components.core.splits import SPLITS, load_meta, load_split
from components.prepare.stage import DECODED, prepare_stage
from components.validate.stage import validate_stage
from tests.helpers import small_params
from tests.helpers.data import checksums, make_images


def _folder_params(folder, size=(12, 12), color="rgb"):
    return small_params(
        data={
            "source": "images",
            "images": {"path": str(folder), "size": list(size), "color": color},
        }
    )


def test_an_image_folder_becomes_uint8_splits_read_memory_mapped(tmp_path, workspace):
    folder = make_images(tmp_path / "shapes", per_class=40, size=12, mode="RGB")
    before = checksums(folder)
    params = _folder_params(folder)
    prepared = prepare_stage(params, workspace)
    assert sum(prepared.counts.values()) == 120 and prepared.input_shape == (3, 12, 12)
    assert not (workspace.prepared / DECODED).exists()  # the scratch file is gone
    split = load_split(workspace.prepared, "train")
    assert isinstance(split.x, np.memmap) and split.x.dtype == np.uint8  # for training
    assert validate_stage(params, workspace).passed
    assert checksums(folder) == before
    # Every prepared image is the shared decoder's output for its file: no skew possible.
    files = sorted(folder.rglob("*.png"))
    decoded = {decode(f, (12, 12), "rgb").tobytes() for f in files}
    for name in SPLITS:
        x = load_split(workspace.prepared, name).x
        assert all(image.tobytes() in decoded for image in x)
    meta = load_meta(workspace.prepared)
    assert meta["pixel_max"] == 255.0 and meta["input_shape"] == [3, 12, 12]


def test_parallel_decoding_keeps_file_order_and_drops_only_bad_files(tmp_path):
    folder = make_images(tmp_path / "shapes", per_class=700, size=8)  # 2,100 files: 5 chunks
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.png"))
    (folder / files[3]).write_bytes(b"not an image")
    (folder / files[1500]).write_bytes(b"")
    images, kept, rejected = decode_files(folder, files, (8, 8), "grayscale", tmp_path / "x.npy",
                                          workers=2)  # fmt: skip
    assert [f for f, _ in rejected] == [files[3], files[1500]]
    assert "corrupt or unreadable" in rejected[0][1] and "zero-byte" in rejected[1][1]
    assert len(images) == len(kept) == 2098 and 3 not in kept and 1500 not in kept
    for row in (0, 2, 1000, 2097):  # the right image at the right row, after the gaps
        np.testing.assert_array_equal(images[row], decode(folder / files[kept[row]], (8, 8),
                                                          "grayscale"))  # fmt: skip
    assert np.load(tmp_path / "x.npy", mmap_mode="r").shape == (2098, 8, 8)
    np.testing.assert_array_equal(images[[5, 9, 1700]], np.load(tmp_path / "x.npy")[[5, 9, 1700]])


def test_bad_files_are_refused_with_their_reasons(tmp_path, workspace):
    folder = make_images(tmp_path / "shapes", per_class=40, size=12)
    Image.fromarray(np.zeros((12, 12), np.uint16) + 4000).save(folder / "circle" / "wide.png")
    Image.new("RGB", (12, 12)).save(folder / "circle" / "colour.png")
    os.mkfifo(folder / "square" / "pipe.png")  # a read would block for ever
    os.symlink("/etc/passwd", folder / "square" / "link.png")
    params = _folder_params(folder, color="grayscale")
    prepared = prepare_stage(params, workspace)
    reasons = {r["file"]: r["reason"] for r in load_meta(workspace.prepared)["rejected"]}
    assert prepared.rejected == 4
    assert "beyond 8 bits" in reasons["circle/wide.png"]
    assert "3 channel(s) (RGB); expected 1 (grayscale)" in reasons["circle/colour.png"]
    assert reasons["square/pipe.png"] == "not a regular file"
    assert "symbolic link" in reasons["square/link.png"]


def test_decode_refuses_what_the_service_must_refuse(tmp_path):
    import io

    def png(image) -> bytes:
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()

    ok = decode(png(Image.new("RGB", (40, 20), (255, 0, 0))), (32, 32), "rgb")
    assert ok.shape == (3, 32, 32) and ok.dtype == np.uint8 and ok[0].min() == 255
    with pytest.raises(ImageRejected, match="more than the 1,000,000 accepted"):
        decode(png(Image.new("L", (2000, 2000))), (32, 32), "grayscale", max_pixels=1_000_000)
    with pytest.raises(ImageRejected, match="corrupt or unreadable"):
        decode(png(Image.new("L", (64, 64)))[:60], (32, 32), "grayscale")  # truncated
    with pytest.raises(ImageRejected, match="a GIF image; PNG or JPEG expected"):
        out = io.BytesIO()
        Image.new("L", (8, 8)).save(out, format="GIF")
        decode(out.getvalue(), (8, 8), "grayscale")
