"""What the service accepts and answers: typed fields, and checks that answer 400 with the reason.

Images come as numbers shaped like the training images; table rows as objects of
the training file's columns, encoded by the encoder the prepare stage fitted
(``components.core.kinds.encoding``; ``null`` where training imputed the column's gaps). Error
messages quote at most 80 characters of what was sent.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
from bentoml.exceptions import BentoMLException, InvalidArgument
from pydantic import BaseModel, ConfigDict, Field

from components.core.kinds import kind as data_kind
from components.core.kinds.base import Refused, check_batch
from components.core.kinds.base import TooLarge as TooLargeInputs
from components.core.kinds.encoding import TableEncoding
from components.core.kinds.images import IMAGES
from components.core.kinds.tables import TABLES
from components.core.kinds.texts import TEXTS

# The package stage writes the model's tag beside this file in the Bento it builds.

MAX_ID_CHARS = 64  # request ids are 32 hex digits


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


class Conflict(BentoMLException):
    error_code = HTTPStatus.CONFLICT


class TooManyInputs(BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


@contextlib.contextmanager
def answered_as_http():
    """A data kind's refusal of a request's inputs as the HTTP answer: 413 for too much,
    400 for the rest, with the kind's reason."""
    try:
        yield
    except TooLargeInputs as err:
        raise TooLarge(str(err)) from None
    except Refused as err:
        raise InvalidArgument(str(err)) from None


def to_batch(images: Any, shape: tuple[int, ...], pixel_max: float) -> np.ndarray:
    """A request's ``images`` as a checked array (``IMAGES.request``)."""
    with answered_as_http():
        return IMAGES.request(images, shape, pixel_max)


def encode_rows(rows: Any, encoding: TableEncoding) -> np.ndarray:
    """A request's ``rows`` encoded as training encoded its table (``TABLES.request``)."""
    with answered_as_http():
        return TABLES.request(rows, encoding)


def to_texts(texts: Any, max_chars: int) -> list[str]:
    """A request's ``texts``, checked (``TEXTS.request``): 400, or 413 past the limits."""
    with answered_as_http():
        return TEXTS.request(texts, max_chars)


def text_inputs(m, texts: Any, tokenizer=None) -> tuple[np.ndarray, tuple, list[str]]:
    """A request's texts for served model ``m``: its token ids (with ``tokenizer``, else the
    model's own: a tokenizer is not to be shared between threads), what the log keeps of them
    (their statistics and UTF-8), and the texts."""
    from components.core.kinds.tokenizer import encode, pad_token, trimmed

    tokenizer = tokenizer or m.tokenizer
    texts = to_texts(texts, int(m.text["max_chars"]))
    ids, unknown = encode(tokenizer, texts, m.max_length)
    stats = TEXTS.describe(texts, unknown)
    if m.any_length:  # short texts run short
        ids = trimmed(ids, pad_token(tokenizer)[1])
    return ids, (stats, [t.encode("utf-8", "replace") for t in texts]), texts


def body_limit(meta: dict, max_file_bytes: int = 0) -> int:
    """The default request-body limit of the model (``DataKind.body_limit``)."""
    return data_kind(meta["kind"]).body_limit(meta, max_file_bytes)


def upload_pixels(files: list, max_bytes: int, max_request_pixels: int) -> int:
    """The pixels a request's image files declare in their headers (nothing decoded yet):
    413 past ``max_bytes`` for one file or ``max_request_pixels`` (MLOOP_MAX_REQUEST_PIXELS)
    for the request; 422 for what is no image."""
    from PIL import Image, UnidentifiedImageError

    with answered_as_http():
        check_batch(len(files))
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
    with answered_as_http():
        check_batch(len(encoded))
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


class Prediction(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True, populate_by_name=True)

    class_: str | int = Field(alias="class", description="the predicted class")
    probabilities: list[float] = Field(description="one per class, in the model's class order")


class Value(BaseModel):
    """A regression's answer for one input: the value, in the label's units."""

    value: float = Field(description="the predicted value")


class Answer(BaseModel):
    """A typed answer: BentoML serialises it without re-deriving a schema per response."""

    model_config = ConfigDict(protected_namespaces=())

    request_id: str = Field(description="quote it to POST /feedback the true labels later")
    model_name: str
    model_version: str
    model_alias: str
    predictions: list[Prediction | Value]  # a class and its probabilities, or a value


class Explanation(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True, populate_by_name=True)

    class_: str | int | None = Field(
        None, alias="class", exclude_if=lambda v: v is None,
        description="the class the attributions are toward (a regression: none, its value)",
    )  # fmt: skip
    value: float | None = Field(None, exclude_if=lambda v: v is None,
                                description="a regression: the value they are toward")  # fmt: skip
    attributions: list | dict = Field(description="rows: {column, value, attribution} per"
                                      " column, largest first; texts: [word, attribution]"
                                      " in order; images: a grid of cells")  # fmt: skip
    completeness: dict | None = Field(
        description="Integrated Gradients: |sum - (f(x) - f(baseline))| / |f(x) - f(baseline)|"
    )


class Explained(Answer):
    method: str = Field(
        description="integrated-gradients, tree-shap, coefficient-x-value or coefficient-x-tfidf"
    )
    explained_version: str = Field(
        description="the version explained (a compressed variant's: the network it came from)"
    )
    explanations: list[Explanation]


class Labelled(BaseModel):
    request_id: str
    labelled: int
    overwritten: int = Field(0, description="labels that replaced earlier ones (overwrite)")
