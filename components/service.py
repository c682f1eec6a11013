"""The Bento service: classify images (POST /predict) or table rows (POST /predict_rows).

Built by the ``package`` stage around the registered model it imported into
the BentoML store; ``bentoml serve`` of the Bento runs this file. Inputs are
checked here, against the model's metadata, so that a malformed request is
answered 400 with the reason, never 500. Every answered request gets an id and
is committed to the inference log (``MLOOP_INFERENCE_LOG``, a SQLite file;
``off`` disables it) before the answer leaves; POST /feedback attaches the true
labels to a logged request later. With ``MLOOP_API_TOKEN`` set, every endpoint
but the health probes wants ``Authorization: Bearer <token>`` and answers 401
without it. BentoML serves /livez, /readyz and the Prometheus /metrics itself.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import uuid
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.exceptions import InvalidArgument, NotFound
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
            raise InvalidArgument(f"row {i}: missing column(s) {missing}")
        unknown = sorted(set(row) - known - {schema["label"]})
        if unknown:
            raise InvalidArgument(f"row {i}: unknown column(s) {unknown}")
        for j, col in enumerate(numeric):
            value = row[col]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidArgument(f"row {i}: {col} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise InvalidArgument(f"row {i}: {col} must be finite")
            out[i, j] = value
        offset = len(numeric)
        for col, cats in categorical.items():
            value = str(row[col])
            if value not in cats:
                raise InvalidArgument(f"row {i}: {col}={value!r} is not one of {cats}")
            out[i, offset + cats.index(value)] = 1.0
            offset += len(cats)
    return out


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


class RequestGate:
    """ASGI middleware in front of the APIs.

    POSTs must be JSON: another content type gets 415 here (BentoML would try to
    parse it and answer 500 on, say, multipart without a boundary). With a token
    set, any request but the probes without ``Authorization: Bearer <token>`` gets
    401.
    """

    def __init__(self, app, token: str | None = None) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            headers = dict(scope["headers"])
            if self.expected is not None and not hmac.compare_digest(
                headers.get(b"authorization", b""), self.expected
            ):
                await _refuse(send, 401, "missing or wrong bearer token (Authorization header)",
                              [(b"www-authenticate", b"Bearer")])  # fmt: skip
                return
            media = headers.get(b"content-type", b"application/json").split(b";")[0].strip()
            if scope["method"] == "POST" and media.lower() != b"application/json":
                await _refuse(send, 415, f"send JSON (Content-Type: application/json), not"
                                         f" {media.decode('latin-1')!r}")  # fmt: skip
                return
        await self.app(scope, receive, send)


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
        self.log = None if LOG_PATH == "off" else InferenceLog(LOG_PATH)

    async def _answer(self, x: np.ndarray) -> Answer:
        if BATCHING:
            proba = np.asarray(await self.inference.to_async.infer(x), dtype=np.float64)
        else:
            proba = probabilities(self.model, x)
        request_id = uuid.uuid4().hex
        classes = [self.classes[int(i)] for i in proba.argmax(1)]
        if self.log is not None:  # committed before the answer leaves
            self.log.append(request_id, self.version, x, classes, proba.max(1))
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
        request_id: Annotated[str, Field(description="the id a prediction answered with")],
        labels: Annotated[
            list, Field(description="the true class of each input of that request, in order")
        ],
    ) -> Labelled:
        """Attach the true labels to a logged request (for quality monitoring)."""
        if self.log is None:
            raise NotFound("the inference log is off (MLOOP_INFERENCE_LOG=off)")
        unknown = [label for label in labels if label not in self.classes]
        if unknown:
            raise InvalidArgument(f"labels {unknown} are not among the classes {self.classes}")
        try:
            updated = self.log.attach_labels(request_id, labels)
        except LookupError as err:
            raise NotFound(str(err)) from None
        except ValueError as err:
            raise InvalidArgument(str(err)) from None
        return Labelled(request_id=request_id, labelled=updated)


Classifier.add_asgi_middleware(RequestGate, token=os.environ.get("MLOOP_API_TOKEN") or None)
