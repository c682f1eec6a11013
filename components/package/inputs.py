"""What the service accepts and answers: typed fields, and checks that answer 400 with the reason.

Images come as numbers shaped like the training images; table rows as objects of
the training file's columns, encoded by the encoder the prepare stage fitted
(``components.core.kinds.encoding``; ``null`` where training imputed the column's gaps). Error
messages quote at most 80 characters of what was sent.
"""

from __future__ import annotations

import base64
import binascii
import io
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
from bentoml.exceptions import BentoMLException, InvalidArgument
from pydantic import BaseModel, ConfigDict, Field

from components.core.kinds.encoding import RowRefused, TableEncoding
from components.core.messages import short

# The package stage writes the model's tag beside this file in the Bento it builds.

MAX_BATCH = 256
MAX_ID_CHARS = 64  # request ids are 32 hex digits
# Bytes per number in the largest legal batch ("255.12345678901234, ") and per request
# besides: the default body limit (MLOOP_MAX_BODY_BYTES overrides it).
BYTES_PER_VALUE = 24
BODY_OVERHEAD = 64 * 1024


# One 8x8 digit ("0") on the 0..16 pixel scale of the built-in data; the tests post it too.
EXAMPLE_INPUT = [
    [0, 0, 5, 13, 9, 1, 0, 0],
    [0, 0, 13, 15, 10, 15, 5, 0],
    [0, 3, 15, 2, 0, 11, 8, 0],
    [0, 4, 12, 0, 0, 8, 8, 0],
    [0, 5, 8, 0, 0, 9, 8, 0],
    [0, 4, 11, 0, 1, 12, 7, 0],
    [0, 2, 14, 5, 10, 12, 0, 0],
    [0, 0, 6, 13, 10, 0, 0, 0],
]


def to_batch(images: Any, shape: tuple[int, ...], pixel_max: float) -> np.ndarray:
    """Turn a request's ``images`` (one image or a list of them) into a checked array."""
    want = "x".join(map(str, shape))
    try:
        x = np.asarray(images, dtype=np.float32)
    except OverflowError:  # an integer past float range
        raise InvalidArgument("images contain a number outside the float32 range") from None
    except (TypeError, ValueError):
        raise InvalidArgument(f"images must be numbers shaped {want} or N x {want}") from None
    if x.ndim == len(shape):
        x = x[None]
    if x.ndim != len(shape) + 1 or x.shape[1:] != tuple(shape):
        raise InvalidArgument(f"images must be shaped {want} or N x {want}, got {list(x.shape)}")
    _check_batch(len(x))
    if not np.isfinite(x).all():
        raise InvalidArgument("images contain NaN or infinite values")
    if x.min() < 0 or x.max() > pixel_max:
        raise InvalidArgument(f"pixel values must lie in [0, {pixel_max:g}]")
    return x


def encode_rows(rows: Any, encoding: TableEncoding) -> np.ndarray:
    """``[{column: value}, ...]`` (or one such object) as the model's input, encoded by the
    encoder training fitted (``TableEncoding.encode_rows``); 400 naming the first bad value."""
    if isinstance(rows, dict):
        rows = [rows]
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InvalidArgument("rows must be an object {column: value} or a list of them")
    _check_batch(len(rows))
    try:
        return encoding.encode_rows(rows)
    except RowRefused as err:
        raise InvalidArgument(str(err)) from None


def upload_pixels(files: list, max_bytes: int, max_request_pixels: int) -> int:
    """The pixels a request's image files declare in their headers (nothing decoded yet):
    413 past ``max_bytes`` for one file or ``max_request_pixels`` (MLOOP_MAX_REQUEST_PIXELS)
    for the request; 422 for what is no image."""
    from PIL import Image, UnidentifiedImageError

    _check_batch(len(files))
    total = 0
    for i, item in enumerate(files):
        size = len(item) if isinstance(item, bytes) else Path(item).stat().st_size
        if size > max_bytes:
            raise TooLarge(f"file {i}: {size:,} bytes is over the {max_bytes:,} accepted"
                           " (MLOOP_MAX_FILE_BYTES)")  # fmt: skip
        try:
            with Image.open(io.BytesIO(item) if isinstance(item, bytes) else item) as img:
                width, height = img.size  # from the header: Image.open decodes nothing
        except Image.DecompressionBombError as err:  # PIL's own limit, checked at open
            raise Unprocessable(f"file {i}: refused as a decompression bomb: {err}") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise Unprocessable(f"file {i}: corrupt or unreadable image: not a PNG or JPEG"
                                " file") from None  # fmt: skip
        total += width * height
        if total > max_request_pixels:
            raise TooLarge(f"the files of this request declare more than {max_request_pixels:,}"
                           " pixels together (MLOOP_MAX_REQUEST_PIXELS): send fewer or smaller"
                           " images a request")  # fmt: skip
    return total


def decode_uploads(files: list, image: dict, max_pixels: int) -> np.ndarray:
    """Image files (paths of uploads, or bytes) as the model's input, decoded exactly as the
    prepare stage decoded the training folder (``components.core.kinds.decode.decode``)."""
    from components.core.kinds.decode import ImageRejected, decode

    size, color = tuple(image["size"]), image["color"]
    out = []
    for i, item in enumerate(files):
        data = item if isinstance(item, bytes) else Path(item).read_bytes()
        try:
            out.append(decode(data, size, color, max_pixels=max_pixels))
        except ImageRejected as err:
            raise Unprocessable(f"file {i}: {err}") from None
    return np.stack(out).astype(np.float32)


def from_base64(encoded: list) -> list[bytes]:
    """``files`` of a JSON body: base64 strings (standard alphabet, padding as sent)."""
    if not isinstance(encoded, list) or not all(isinstance(e, str) for e in encoded):
        raise InvalidArgument("files must be a list of base64 strings, one per image file")
    _check_batch(len(encoded))
    try:
        return [base64.b64decode(e, validate=True) for e in encoded]
    except (binascii.Error, ValueError) as err:
        raise InvalidArgument(f"files: not valid base64: {err}") from None


class TooLarge(BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class Unprocessable(BentoMLException):
    """A well-formed request whose image cannot be used: not an image, truncated, too many
    pixels, another colour mode."""

    error_code = HTTPStatus.UNPROCESSABLE_ENTITY


def body_limit(meta: dict, max_file_bytes: int = 0) -> int:
    """The default request-body limit: the largest legal batch of this model's inputs; for a
    model trained on image files, at least one file of ``max_file_bytes`` in base64."""
    if meta.get("text"):  # a text model: a character takes at most 6 bytes in JSON (\uXXXX)
        return MAX_BATCH * (int(meta["text"]["max_chars"]) * 6 + 8) + BODY_OVERHEAD
    if meta.get("schema"):  # a table model: its encoding's columns
        schema = meta["schema"]
        columns = [*schema["numeric"], *schema["categorical"], schema["label"]]
        per_row = sum(len(c) + 8 for c in columns) + BYTES_PER_VALUE * len(columns)
        per_row += sum(max(map(len, cats), default=0) for cats in schema["categorical"].values())
        return MAX_BATCH * per_row + BODY_OVERHEAD
    values = int(np.prod(meta["input_shape"]))
    pixels = MAX_BATCH * values * BYTES_PER_VALUE + BODY_OVERHEAD
    if meta.get("image_files"):
        return max(pixels, -(-max_file_bytes // 3) * 4 + BODY_OVERHEAD)
    return pixels


def to_texts(texts: Any, max_chars: int, max_texts: int = MAX_BATCH) -> list[str]:
    """A request's ``texts`` (one text or a list of them), checked: 400 for what is not
    text or holds no character, 413 beyond ``max_texts`` texts or ``max_chars`` characters
    in one (/predict_text)."""
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts:
        raise InvalidArgument("texts must be a text or a non-empty list of texts")
    if len(texts) > max_texts:
        raise TooLarge(f"at most {max_texts} texts a request, got {len(texts)}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidArgument(f"texts[{i}] is not a text: {short(text)}")
        if len(text) > max_chars:
            raise TooLarge(f"texts[{i}] has {len(text):,} characters; at most {max_chars:,}")
        if not text.strip():
            raise InvalidArgument(f"texts[{i}] is empty or only whitespace")
    return texts


def _check_batch(n: int) -> None:
    if n == 0 or n > MAX_BATCH:
        raise InvalidArgument(f"send between 1 and {MAX_BATCH} inputs, got {n}")


class Prediction(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True, populate_by_name=True)

    class_: str | int = Field(alias="class", description="the predicted class")
    probabilities: list[float] = Field(description="one per class, in the model's class order")


class Answer(BaseModel):
    """A typed answer: BentoML serialises it without re-deriving a schema per response."""

    model_config = ConfigDict(protected_namespaces=())

    request_id: str = Field(description="quote it to POST /feedback the true labels later")
    model_name: str
    model_version: str
    model_alias: str
    predictions: list[Prediction]


class Labelled(BaseModel):
    request_id: str
    labelled: int
    overwritten: int = Field(0, description="labels that replaced earlier ones (overwrite)")
