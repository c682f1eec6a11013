"""The Bento service: classify images (POST /predict) or table rows (POST /predict_rows).

Built by the ``package`` stage around the registered model it imported into
the BentoML store; ``bentoml serve`` of the Bento runs this file. Inputs are
checked here, against the model's metadata, so that a malformed request is
answered 400 with the reason, never 500.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.exceptions import InvalidArgument
from pydantic import Field

# The package stage writes the model's tag beside this file in the Bento it builds.
_PINNED = Path(__file__).with_name("bento_model.json")
MODEL_TAG = os.environ.get("MLOOP_BENTO_MODEL") or (
    json.loads(_PINNED.read_text())["tag"] if _PINNED.is_file() else "digits-classifier:latest"
)
MAX_BATCH = 256

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


@bentoml.service(name="mloop_classifier", traffic={"timeout": 30})
class Classifier:
    model_ref = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        self.model = bentoml.mlflow.load_model(self.model_ref)
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

    def _answer(self, x: np.ndarray) -> dict:
        out = self.model.predict(x)
        if isinstance(out, dict):  # ONNX models answer {output name: array}
            out = next(iter(out.values()))
        proba = np.asarray(out, dtype=np.float64)
        return {
            "model_name": self.model_name,
            "model_version": self.version,
            "model_alias": self.alias,
            "predictions": [
                {"class": self.classes[int(p.argmax())], "probabilities": p.round(6).tolist()}
                for p in proba
            ],
        }

    @bentoml.api
    def predict(
        self,
        images: Annotated[
            list,
            Field(
                description="one image (rows of pixel values) or a list of images",
                examples=[EXAMPLE_INPUT],
            ),
        ],
    ) -> dict:
        """Classify one image or a batch of images given as raw pixel values."""
        if self.kind != "image":
            raise InvalidArgument("this model classifies table rows: POST them to /predict_rows")
        return self._answer(to_batch(images, self.shape, self.pixel_max))

    @bentoml.api
    def predict_rows(
        self,
        rows: Annotated[
            list, Field(description="table rows as objects {column: value}", min_length=1)
        ],
    ) -> dict:
        """Classify table rows given as objects of column values, as in the training file."""
        if self.kind != "tabular":
            raise InvalidArgument("this model classifies images: POST them to /predict")
        return self._answer(encode_rows(rows, self.schema))
