"""The Bento service: classify images (POST /predict) or table rows (POST /predict_rows).

Built by the ``package`` stage around the registered model it imported into
the BentoML store; ``bentoml serve`` of the Bento runs this file. Inputs are
checked here, against the model's metadata, so that a malformed request is
answered 400 with the reason, never 500. Every answered request gets an id and
is committed to the inference log (``MLOOP_INFERENCE_LOG``, a SQLite file;
``off`` disables it) before the answer leaves; POST /feedback attaches the true
labels to a logged request later. With ``MLOOP_API_TOKEN`` set, every endpoint
but the health probes wants ``Authorization: Bearer <token>`` and answers 401
without it (an empty token counts as not set); /metrics also takes
``MLOOP_METRICS_TOKEN``, a scrape credential. Bodies beyond ``MLOOP_MAX_BODY_BYTES``
(default: the largest legal batch) answer 413 before anything is parsed. A log
that cannot be opened or written makes the service not ready (/readyz 503) and
answers 503 with the reason: a prediction is never acknowledged unlogged.
BentoML serves /livez, /readyz and the Prometheus /metrics itself.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import sqlite3
import uuid
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.exceptions import BentoMLException, InvalidArgument, NotFound, ServiceUnavailable
from pydantic import BaseModel, ConfigDict, Field

from components.inference_log import InferenceLog

# The package stage writes the model's tag beside this file in the Bento it builds.
_PINNED = Path(__file__).with_name("bento_model.json")
MODEL_TAG = os.environ.get("MLOOP_BENTO_MODEL") or (
    json.loads(_PINNED.read_text())["tag"] if _PINNED.is_file() else "digits-classifier:latest"
)
MAX_BATCH = 256
LOG_PATH = os.environ.get("MLOOP_INFERENCE_LOG", "inference.sqlite")
# Adaptive batching: requests' inputs go to a batchable inference service (another
# process) that BentoML feeds in batches. Off by default: benchmarks/serving.py.
BATCHING = os.environ.get("MLOOP_BATCHING") == "1"
OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz"})  # probes answer without a token
METRICS_PATH = "/metrics"
FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_ID_CHARS = 64  # request ids are 32 hex digits
# Bytes per number in the largest legal batch ("255.12345678901234, ") and per request
# besides: the default body limit (MLOOP_MAX_BODY_BYTES overrides it).
BYTES_PER_VALUE = 24
BODY_OVERHEAD = 64 * 1024


def _positive_int(name: str) -> int | None:
    """A whole-number setting from the environment; a bad value stops the start-up."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name} must be a whole number of bytes, at least 1; got {text[:40]!r}")
    return int(text)


MAX_BODY_BYTES = _positive_int("MLOOP_MAX_BODY_BYTES")

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


def encode_rows(rows: Any, schema: dict) -> np.ndarray:
    """Encode ``[{column: value}, ...]`` as the model's input: numbers, then one-hot categories."""
    if isinstance(rows, dict):
        rows = [rows]
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InvalidArgument("rows must be an object {column: value} or a list of them")
    _check_batch(len(rows))
    numeric, categorical = schema["numeric"], schema["categorical"]
    known = set(numeric) | set(categorical)
    out = np.zeros((len(rows), len(schema["encoded"])), np.float32)
    for i, row in enumerate(rows):
        missing = sorted(known - set(row))
        if missing:
            raise InvalidArgument(f"row {i}: missing column(s) {short(missing)}")
        unknown = sorted(set(row) - known - {schema["label"]})
        if unknown:
            raise InvalidArgument(f"row {i}: unknown column(s) {short(unknown)}")
        for j, col in enumerate(numeric):
            value = row[col]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidArgument(f"row {i}: {col} must be a number, got {short(value)}")
            if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
                raise InvalidArgument(f"row {i}: {col} must be finite, within the float32 range")
            out[i, j] = value
        offset = len(numeric)
        for col, cats in categorical.items():
            value = str(row[col])
            if value not in cats:
                raise InvalidArgument(f"row {i}: {col}={short(value)} is not one of {short(cats)}")
            out[i, offset + cats.index(value)] = 1.0
            offset += len(cats)
    return out


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: errors never echo unbounded input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 15]}... ({len(text)} chars)"


def body_limit(meta: dict) -> int:
    """The default request-body limit: the largest legal batch of this model's inputs."""
    if meta.get("kind") == "tabular" and meta.get("schema"):
        schema = meta["schema"]
        columns = [*schema["numeric"], *schema["categorical"], schema["label"]]
        per_row = sum(len(c) + 8 for c in columns) + BYTES_PER_VALUE * len(columns)
        per_row += sum(max(map(len, cats), default=0) for cats in schema["categorical"].values())
        return MAX_BATCH * per_row + BODY_OVERHEAD
    values = int(np.prod(meta.get("input_shape", (8, 8))))
    return MAX_BATCH * values * BYTES_PER_VALUE + BODY_OVERHEAD


def check_labels(labels: list, classes: list) -> list:
    """Labels of the model's own class type and among its classes (``True`` is no 1)."""
    kinds = {type(c) for c in classes}
    wrong = [v for v in labels if type(v) not in kinds or v not in classes]
    if wrong:
        types = "/".join(sorted(k.__name__ for k in kinds))
        raise InvalidArgument(
            f"labels {short(wrong)} are not among the classes {short(classes)} (of type {types})"
        )
    return labels


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


class Conflict(BentoMLException):
    error_code = HTTPStatus.CONFLICT


class TooLarge(Exception):
    pass


class RequestGate:
    """ASGI middleware in front of the APIs.

    POSTs must say they are JSON: another or a missing content type gets 415 here
    (BentoML would try to parse it, and a page could post into the service
    with a "simple" cross-origin request). A body over the limit gets 413 before
    it is parsed: its length is checked from the header, then while it is read.
    With a token set, any request but the probes without ``Authorization: Bearer
    <token>`` gets 401; /metrics also takes the metrics token.
    """

    body_limit: int | None = None  # set by the service once it knows its model
    # Why the service cannot answer now (its log): BentoML hides a 5xx's message, so
    # the gate puts this reason into the 503 answers on their way out.
    unavailable: str | None = None

    def __init__(self, app, token: str | None = None, metrics_token: str | None = None) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None
        self.metrics = f"Bearer {metrics_token}".encode() if metrics_token else None

    def limit(self) -> int:
        return MAX_BODY_BYTES or RequestGate.body_limit or 8 * 2**20

    def _authorised(self, path: str, given: bytes) -> bool:
        if self.expected is None:
            return True
        if hmac.compare_digest(given, self.expected):
            return True
        return (
            path == METRICS_PATH
            and self.metrics is not None
            and hmac.compare_digest(given, self.metrics)
        )

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if not self._authorised(scope["path"], headers.get(b"authorization", b"")):
            await _refuse(send, 401, "missing or wrong bearer token (Authorization header)",
                          [(b"www-authenticate", b"Bearer")])  # fmt: skip
            return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media != b"application/json":
            shown = media.decode("latin-1")[:60] or "none"
            await _refuse(send, 415, f"send JSON (Content-Type: application/json), not {shown}")
            return
        limit = self.limit()
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(send, 413, f"request body of {int(declared)} bytes is over the limit"
                                     f" of {limit} (MLOOP_MAX_BODY_BYTES)")  # fmt: skip
            return
        try:
            body = await _read_body(receive, limit)
        except TooLarge:
            await _refuse(send, 413, f"request body is over the limit of {limit} bytes"
                                     " (MLOOP_MAX_BODY_BYTES)")  # fmt: skip
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:  # the app reads on after the body: only a disconnect is left
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, _with_reason(send))


def _with_reason(send):
    """``send`` that replaces the body of a 503 with ``RequestGate.unavailable``."""
    reason: bytes | None = None

    async def sending(message) -> None:
        nonlocal reason
        if message["type"] == "http.response.start" and message["status"] == 503:
            if RequestGate.unavailable:
                reason = json.dumps({"error": RequestGate.unavailable}).encode()
                kept = [(k, v) for k, v in message["headers"]
                        if k.lower() not in (b"content-length", b"content-type")]  # fmt: skip
                message = {**message, "headers": [*kept, (b"content-type", b"application/json"),
                           (b"content-length", str(len(reason)).encode())]}  # fmt: skip
        elif message["type"] == "http.response.body" and reason is not None:
            if message.get("more_body"):
                return
            message = {"type": "http.response.body", "body": reason}
        await send(message)

    return sending


async def _read_body(receive, limit: int) -> bytes:
    """The whole request body, refusing (``TooLarge``) once it passes ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _refuse(send, status: int, message: str, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *(headers or [])]})  # fmt: skip
    await send({"type": "http.response.body", "body": json.dumps({"error": message}).encode()})


def probabilities(model, x: np.ndarray) -> np.ndarray:
    out = model.predict(x)
    if isinstance(out, dict):  # ONNX models answer {output name: array}
        out = next(iter(out.values()))
    return np.asarray(out, dtype=np.float64)


@bentoml.service(name="mloop_inference", traffic={"timeout": 30}, workers=1)
class Inference:
    """The model alone, batchable: BentoML groups concurrent requests' inputs."""

    model_ref = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        self.model = bentoml.mlflow.load_model(self.model_ref)

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=100)
    def infer(self, x: np.ndarray) -> np.ndarray:
        return probabilities(self.model, x.astype(np.float32))


@bentoml.service(
    name="mloop_classifier",
    traffic={"timeout": 30},
    logging={"access": {"enabled": os.environ.get("MLOOP_ACCESS_LOG") == "1"}},
    workers=int(os.environ.get("MLOOP_SERVICE_WORKERS", "2")),  # benchmarks/serving.py
)
class Classifier:
    model_ref = bentoml.models.BentoModel(MODEL_TAG)
    if BATCHING:
        inference = bentoml.depends(Inference)

    def __init__(self) -> None:
        self.model = None if BATCHING else bentoml.mlflow.load_model(self.model_ref)
        info = self.model_ref.info  # the stored model, once the service is running
        self.version = str(info.labels.get("model_version", "unknown"))
        self.model_name = str(info.labels.get("model_name", "unknown"))
        self.alias = str(info.labels.get("alias", "unknown"))
        meta = info.metadata
        self.kind = meta.get("kind", "image")
        self.shape = tuple(meta.get("input_shape", (8, 8)))
        self.pixel_max = float(meta.get("pixel_max") or 16.0)
        self.classes = list(meta.get("classes", range(10)))
        self.schema = meta.get("schema")
        RequestGate.body_limit = body_limit(dict(meta))
        self.log: InferenceLog | None = None
        self.log_error: str | None = None  # why the log cannot be written, while it cannot
        if LOG_PATH != "off":
            self._open_log()

    def _open_log(self) -> InferenceLog | None:
        """The inference log, opened now if it could not be before (a fixed folder)."""
        if self.log is None:
            try:
                self.log = InferenceLog(LOG_PATH)
                self.log_error = None
            except (OSError, sqlite3.Error) as err:
                self.log_error = f"cannot open the inference log {LOG_PATH}: {err}"
        RequestGate.unavailable = self.log_error
        return self.log

    def __is_ready__(self) -> bool:
        """/readyz: 503 while the inference log cannot be written (retried at each probe)."""
        if LOG_PATH == "off":
            return True
        if self._open_log() is None:
            return False
        if self.log_error is not None:
            try:
                self._logged(lambda log: log.probe())
            except ServiceUnavailable:
                return False
        return True

    def _logged(self, write):
        """Run a log write; a failure makes the service not ready and answers 503."""
        if self._open_log() is None:
            RequestGate.unavailable = f"{self.log_error}; nothing was answered"
            raise ServiceUnavailable(RequestGate.unavailable)
        try:
            result = write(self.log)
        except sqlite3.Error as err:
            self.log_error = f"cannot write the inference log {LOG_PATH}: {err}"
            RequestGate.unavailable = f"{self.log_error}; nothing was answered"
            raise ServiceUnavailable(RequestGate.unavailable) from None
        self.log_error = RequestGate.unavailable = None
        return result

    async def _answer(self, x: np.ndarray) -> Answer:
        if BATCHING:
            proba = np.asarray(await self.inference.to_async.infer(x), dtype=np.float64)
        else:
            proba = probabilities(self.model, x)
        request_id = uuid.uuid4().hex
        classes = [self.classes[int(i)] for i in proba.argmax(1)]
        if LOG_PATH != "off":  # committed before the answer leaves
            self._logged(lambda log: log.append(request_id, self.version, x, classes,
                                                proba.max(1)))  # fmt: skip
        return Answer(
            request_id=request_id,
            model_name=self.model_name,
            model_version=self.version,
            model_alias=self.alias,
            predictions=[
                Prediction(class_=c, probabilities=p.round(6).tolist())
                for c, p in zip(classes, proba, strict=True)
            ],
        )

    @bentoml.api
    async def predict(
        self,
        images: Annotated[
            list,
            Field(
                description="one image (rows of pixel values) or a list of images",
                examples=[EXAMPLE_INPUT],
            ),
        ],
    ) -> Answer:
        """Classify one image or a batch of images given as raw pixel values."""
        if self.kind != "image":
            raise InvalidArgument("this model classifies table rows: POST them to /predict_rows")
        return await self._answer(to_batch(images, self.shape, self.pixel_max))

    @bentoml.api
    async def predict_rows(
        self,
        rows: Annotated[
            list, Field(description="table rows as objects {column: value}", min_length=1)
        ],
    ) -> Answer:
        """Classify table rows given as objects of column values, as in the training file."""
        if self.kind != "tabular":
            raise InvalidArgument("this model classifies images: POST them to /predict")
        return await self._answer(encode_rows(rows, self.schema))

    @bentoml.api
    async def feedback(
        self,
        request_id: Annotated[
            str,
            Field(
                description="the id a prediction answered with",
                min_length=1,
                max_length=MAX_ID_CHARS,
            ),
        ],  # fmt: skip
        labels: Annotated[
            list,
            Field(
                description="the true class of each input of that request, in order",
                min_length=1,
                max_length=MAX_BATCH,
            ),
        ],  # fmt: skip
        overwrite: Annotated[
            bool, Field(description="replace labels given before (else 409 Conflict)")
        ] = False,
    ) -> Labelled:
        """Attach the true labels to a logged request (for quality monitoring)."""
        if LOG_PATH == "off":
            raise NotFound("the inference log is off (MLOOP_INFERENCE_LOG=off)")
        check_labels(labels, self.classes)
        try:
            updated, replaced = self._logged(
                lambda log: log.attach_labels(request_id, labels, overwrite=overwrite)
            )
        except LookupError as err:
            raise NotFound(str(err)) from None
        except FileExistsError as err:
            raise Conflict(str(err)) from None
        except ValueError as err:
            raise InvalidArgument(str(err)) from None
        return Labelled(request_id=request_id, labelled=updated, overwritten=replaced)


def _token(name: str) -> str | None:
    """A token from the environment; empty or blank counts as not set."""
    return (os.environ.get(name) or "").strip() or None


Classifier.add_asgi_middleware(
    RequestGate, token=_token("MLOOP_API_TOKEN"), metrics_token=_token("MLOOP_METRICS_TOKEN")
)
