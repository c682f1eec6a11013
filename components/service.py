"""The Bento service: POST /predict with one or more images, get classes and probabilities.

Built by the ``package`` stage around the registered model it imported into
the BentoML store; ``bentoml serve`` of the Bento runs this file. Inputs are
checked here so that a malformed request is answered 400 with the reason,
never 500.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.exceptions import InvalidArgument
from pydantic import Field

MODEL_TAG = os.environ.get("MLOOP_BENTO_MODEL", "digits-classifier:latest")
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


def to_batch(images: Any, height: int, width: int, pixel_max: float) -> np.ndarray:
    """Turn a request's ``images`` (one image or a list of them) into a checked array."""
    try:
        x = np.asarray(images, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidArgument(
            f"images must be numbers shaped {height}x{width} or N x {height}x{width}"
        ) from None
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1:] != (height, width):
        raise InvalidArgument(
            f"images must be shaped {height}x{width} or N x {height}x{width}, got {list(x.shape)}"
        )
    if len(x) == 0 or len(x) > MAX_BATCH:
        raise InvalidArgument(f"send between 1 and {MAX_BATCH} images, got {len(x)}")
    if not np.isfinite(x).all():
        raise InvalidArgument("images contain NaN or infinite values")
    if x.min() < 0 or x.max() > pixel_max:
        raise InvalidArgument(f"pixel values must lie in [0, {pixel_max:g}]")
    return x


@bentoml.service(name="digits_classifier", traffic={"timeout": 30})
class DigitsClassifier:
    model_ref = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        self.model = bentoml.mlflow.load_model(self.model_ref)
        info = self.model_ref.info  # the stored model, once the service is running
        self.version = str(info.labels.get("model_version", "unknown"))
        self.model_name = str(info.labels.get("model_name", "unknown"))
        meta = info.metadata
        self.shape = (int(meta.get("height", 8)), int(meta.get("width", 8)))
        self.pixel_max = float(meta.get("pixel_max", 16.0))
        self.classes = [int(c) for c in meta.get("classes", range(10))]

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
        """Classify one image (H x W) or a batch (N x H x W) of raw pixel values."""
        x = to_batch(images, *self.shape, self.pixel_max)
        proba = np.asarray(self.model.predict(x), dtype=np.float64)
        return {
            "model_name": self.model_name,
            "model_version": self.version,
            "predictions": [
                {"class": self.classes[int(p.argmax())], "probabilities": p.round(6).tolist()}
                for p in proba
            ],
        }
