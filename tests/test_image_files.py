"""A folder of JPEG files in 10 classes round the whole loop, then served: the files
themselves, uploaded (multipart or base64), get the predictions of the prepared arrays
(no training/serving skew), and bad uploads answer 4xx."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from components.core.splits import load_split
from components.serve import traffic
from tests.helpers import labeller, looped, post, repo_params, served
from tests.helpers.data import make_jpegs

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
SIZE = 16


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    root = tmp_path_factory.mktemp("jpegs")
    make_jpegs(root / "photos", classes=10, per_class=40, size=SIZE)
    raw = repo_params()
    raw["data"].update(source="images",
                       images={"path": "photos", "size": [SIZE, SIZE], "color": "rgb"})  # fmt: skip
    raw["train"]["epochs"] = 8
    raw["compress"].update(latency_repeats=20, variants=["onnx", "onnx-int8"])
    raw["register"]["model_name"] = "photos"
    raw["package"]["service_name"] = "photos"
    with looped(root, raw) as run:
        yield run


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _declared_png(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` pixels, with (almost) no data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))  # fmt: skip

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))  # fmt: skip


def _upload(port: int, files: list[tuple[str, bytes]]) -> tuple[int, dict]:
    return _raw_upload(port, traffic.multipart(files))


def _raw_upload(port: int, body: bytes) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict_files", data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={traffic.BOUNDARY}"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_the_loop_runs_on_a_folder_of_jpegs(jpegs):
    ws, state = jpegs
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary.evaluation.scores.accuracy > 0.9  # ten colour patterns under noise
    test = load_split(ws.prepared, "test")
    assert test.x.dtype == np.uint8 and test.x.shape[1:] == (3, SIZE, SIZE)
    files = (ws.prepared / "test_files.txt").read_text().split()
    assert len(files) == len(test) and files[0].startswith("c")


def test_uploaded_files_get_the_predictions_of_the_prepared_arrays(jpegs, tmp_path):
    from components.core.predict import load_registered

    ws, state = jpegs
    bento = state.result().bento
    test = load_split(ws.prepared, "test")
    names = (ws.prepared / "test_files.txt").read_text().split()[:24]
    files = [(n, (ws.root / "photos" / n).read_bytes()) for n in names]
    alias = bento.alias  # the version the Bento serves (compressed or not)
    expected = load_registered(f"models:/photos@{alias}")(test.x[:24])
    with served(bento.bento_tag, tmp_path / "log.sqlite") as (port, _):
        status, body = _upload(port, files)
        assert status == 200, body
        got = np.array([p["probabilities"] for p in body["predictions"]])
        np.testing.assert_allclose(got, expected, atol=1e-5)
        encoded = {"files": [base64.b64encode(data).decode() for _, data in files[:3]]}
        status, body = post(port, json.dumps(encoded).encode(), "predict_base64")
        assert status == 200, body
        np.testing.assert_allclose([p["probabilities"] for p in body["predictions"]],
                                   expected[:3], atol=1e-5)  # fmt: skip

        # Bad uploads answer 4xx with the reason, and the service stays up.
        bomb = _declared_png(20_000, 20_000)  # 60 bytes that declare 400 million pixels
        bad = {
            "not an image": (b"this is text, not a picture", 422, "corrupt or unreadable"),
            "truncated": (files[0][1][: len(files[0][1]) // 2], 422, "corrupt or unreadable"),
            "20,000x20,000": (bomb, 422, "400000000 pixels"),  # PIL's bomb check, at open
            "grayscale": (_png(Image.new("L", (SIZE, SIZE))), 422, "expected 3 (rgb)"),
        }
        for what, (data, want, reason) in bad.items():
            status, body = _upload(port, [("x.png", data)])
            assert status == want and reason in json.dumps(body), (what, status, body)
        status, body = post(port, json.dumps({"files": ["not base64!"]}).encode(),
                            "predict_base64")  # fmt: skip
        assert status == 400 and "base64" in json.dumps(body)
        no_name = (f'--{traffic.BOUNDARY}\r\nContent-Disposition: form-data; name="files"'
                   f"\r\n\r\n{{}}\r\n--{traffic.BOUNDARY}--\r\n").encode()  # fmt: skip
        status, body = _raw_upload(port, no_name)  # a field, not a file: BentoML said 500
        assert status == 400 and "not a file in the field `files`" in json.dumps(body)
        assert _upload(port, files[:1])[0] == 200
    with served(bento.bento_tag, tmp_path / "log2.sqlite", MLOOP_MAX_FILE_BYTES="200") as (
        port, _
    ):  # fmt: skip
        status, body = _upload(port, files[:1])
        assert status == 413 and "MLOOP_MAX_FILE_BYTES" in json.dumps(body)
    limits = {"MLOOP_MAX_IMAGE_PIXELS": "300", "MLOOP_MAX_REQUEST_PIXELS": str(3 * SIZE * SIZE)}
    with served(bento.bento_tag, tmp_path / "log3.sqlite", **limits) as (port, _):
        assert _upload(port, files[:3])[0] == 200  # 768 pixels: the request's budget
        status, body = _upload(port, files[:4])  # one image more: over it, nothing decoded
        assert status == 413 and "MLOOP_MAX_REQUEST_PIXELS" in json.dumps(body), body
        status, body = _upload(port, [("big.png", _png(Image.new("RGB", (20, 20))))])
        assert status == 422 and "more than the 300 accepted" in json.dumps(body), body


def test_mloop_traffic_uploads_files(jpegs, tmp_path):
    ws, state = jpegs
    images, labels = traffic.folder_files(ws.root / "photos", limit=50)
    assert len(images) == 50 and set(labels) <= {f"c{k}" for k in range(10)}
    with served(state.result().bento.bento_tag, tmp_path / "log.sqlite") as (port, _):
        result = traffic.run(f"http://127.0.0.1:{port}", images, labels, rate=40,
                             duration_s=1.0, feedback=1.0,
                             labeller_token=labeller(tmp_path / "log.sqlite"))  # fmt: skip
    assert result.ok == result.sent == 40 and not result.errors, result.summary()
    assert result.labelled == 40  # class-folder names are the model's classes
