"""Class probabilities from any model the loop makes: one way, used by every stage.

A registered MLflow model (torch, ONNX, sklearn flavours) answers through
``pyfunc_predictor``; a torch module in memory through ``torch_predictor``. ONNX
models answer ``{output name: array}``; ``as_probabilities`` takes either form.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Predictor = Callable[[np.ndarray], np.ndarray]


def as_probabilities(output) -> np.ndarray:
    """A model's output as an N x classes float64 array (ONNX's dict of outputs too)."""
    if isinstance(output, dict):  # ONNX models answer {output name: array}
        output = next(iter(output.values()))
    return np.asarray(output, dtype=np.float64)


def pyfunc_predictor(model) -> Predictor:
    """An MLflow pyfunc model as a function of float32 inputs."""
    return lambda x: as_probabilities(model.predict(np.asarray(x, dtype=np.float32)))


def load_registered(uri: str) -> Predictor:
    """``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` as a predictor."""
    import mlflow  # heavy (~10 s): only where a registered model is loaded

    return pyfunc_predictor(mlflow.pyfunc.load_model(uri))


def torch_predictor(module) -> Predictor:
    """Wrap a torch module that returns logits or probabilities."""
    import torch  # heavy: the registry and the service reach this module without torch

    def predict(x: np.ndarray) -> np.ndarray:
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(x), 512):
                batch = torch.from_numpy(np.ascontiguousarray(x[start : start + 512]))
                out = module(batch).float()
                if not torch.allclose(out.sum(dim=1), torch.ones(len(out)), atol=1e-3):
                    out = torch.softmax(out, dim=1)
                outputs.append(out.numpy())
        return np.concatenate(outputs)

    return predict
