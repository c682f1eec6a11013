"""The bare peer of benchmarks/serving.py: Starlette on uvicorn, the same model in ONNX Runtime.

    uvicorn serving_peer:app --app-dir benchmarks --workers 2   # PEER_ONNX=model.onnx

The thinnest honest server a user would write instead of mloop's: it parses the
same JSON request, checks the shape and pixel range the same way, runs the same
``model.onnx`` with the same ONNX Runtime settings and answers the same fields
(request id, model name, version and alias, class and probabilities per image).
It keeps no inference log and has no schema, metrics or authentication.
"""

from __future__ import annotations

import json
import os
import uuid

import numpy as np
import onnxruntime as ort
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SHAPE = (8, 8)
PIXEL_MAX = 16.0
options = ort.SessionOptions()
options.intra_op_num_threads = int(os.environ.get("PEER_ORT_THREADS", "1"))
session = ort.InferenceSession(os.environ["PEER_ONNX"], options, providers=["CPUExecutionProvider"])
INPUT = session.get_inputs()[0].name


async def predict(request: Request) -> Response:
    try:
        x = np.asarray(json.loads(await request.body())["images"], dtype=np.float32)
    except (ValueError, TypeError, KeyError, OverflowError):
        return JSONResponse({"error": "images must be numbers"}, status_code=400)
    if x.ndim == len(SHAPE):
        x = x[None]
    if x.shape[1:] != SHAPE or not 1 <= len(x) <= 256 or not np.isfinite(x).all():
        return JSONResponse({"error": f"images must be shaped {SHAPE}"}, status_code=400)
    if x.min() < 0 or x.max() > PIXEL_MAX:
        return JSONResponse({"error": "pixel values out of range"}, status_code=400)
    proba = session.run(None, {INPUT: x})[0].astype(np.float64)
    return JSONResponse(
        {
            "request_id": uuid.uuid4().hex,
            "model_name": "digits-classifier",
            "model_version": "peer",
            "model_alias": "peer",
            "predictions": [
                {"class": int(p.argmax()), "probabilities": p.round(6).tolist()} for p in proba
            ],
        }
    )


async def ready(request: Request) -> Response:
    return Response(status_code=200)


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", ready)])
