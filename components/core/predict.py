"""Class probabilities (a regression's values: one column) from any model the loop makes:
one way, used by every stage.

A registered MLflow model (torch, ONNX, sklearn flavours) answers through
``pyfunc_predictor``; a torch module in memory through ``torch_predictor``. ONNX
models answer ``{output name: array}``; ``as_probabilities`` takes either form.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

Predictor = Callable[[np.ndarray], np.ndarray]


def as_probabilities(output) -> np.ndarray:
    """A model's output as an N x classes float64 array (ONNX's dict of outputs too); a
    regression's values (N, or N x 1) as N x 1."""
    if isinstance(output, dict):  # ONNX models answer {output name: array}
        output = next(iter(output.values()))
    output = np.asarray(output, dtype=np.float64)
    return output.reshape(-1, 1) if output.ndim == 1 else output


CHUNK = 1024  # rows per call: a CNN's activations for 32,000 images at once took 23 GB


def input_dtype(model) -> type:
    """What a pyfunc model takes: int64 for token ids (an ONNX text model's signature),
    float32 for everything else (a torch text model turns float ids into ids itself)."""
    schema = model.metadata.get_input_schema()
    tensor = schema is not None and schema.is_tensor_spec()
    return np.int64 if tensor and np.issubdtype(schema.numpy_types()[0], np.integer) else np.float32


def pyfunc_predictor(model) -> Predictor:
    """An MLflow pyfunc model as a function of its inputs (``input_dtype``), called ``CHUNK``
    rows at a time."""
    dtype = input_dtype(model)

    def predict(x: np.ndarray) -> np.ndarray:
        parts = [as_probabilities(model.predict(np.asarray(x[s : s + CHUNK], dtype=dtype)))
                 for s in range(0, len(x), CHUNK)]  # fmt: skip
        return np.concatenate(parts) if parts else np.zeros((0, 0))

    return predict


def load_registered(uri: str) -> Predictor:
    """``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` as a predictor."""
    import mlflow  # heavy (~10 s): only where a registered model is loaded

    return pyfunc_predictor(mlflow.pyfunc.load_model(uri))


def served_predictor(mlflow_model: str | Path, threads: int = 1) -> Predictor:
    """``served``'s predictor alone."""
    return served(mlflow_model, threads)[0]


def served(mlflow_model: str | Path, threads: int = 1) -> tuple[Predictor, bool]:
    """A stored MLflow model (the folder holding ``MLmodel``) as the service answers with
    it, and whether it reads token ids of any length: an ONNX graph whose second input
    axis is free (a text family's export, ``Family.token_ids``), so the service may cut the
    padding after a batch's longest text. Other models read exactly ``max_length`` ids (a
    TF-IDF pipeline over them, a module of yours that flattens them).

    A model with the ONNX flavour runs in ONNX Runtime directly, on ``threads``
    intra-op threads: MLflow's pyfunc wrapper around the same session doubled the cost
    of a call and loaded mlflow into each server worker. Other flavours answer
    through pyfunc, with torch held to ``threads`` intra-op threads as well: at its
    default (a thread per core in every server worker) the workers' spinning threads
    took the cores from each other, and a TorchScript int8 text model that answers in
    0.4 ms alone answered 100 requests/s at a median of 7 s under ``mloop serve``.
    """
    path = Path(mlflow_model)
    flavours = yaml.safe_load((path / "MLmodel").read_text()).get("flavors", {})
    if "onnx" not in flavours:
        import mlflow  # heavy (~10 s): only for a model that is not ONNX

        if "pytorch" in flavours:
            import torch  # heavy: only for a torch model, which pyfunc loads with it anyway

            torch.set_num_threads(threads)

        return pyfunc_predictor(mlflow.pyfunc.load_model(str(path))), False
    import onnxruntime as ort  # only where an ONNX model is served: the GPU machine has none

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(path / flavours["onnx"]["data"]), options, providers=["CPUExecutionProvider"]
    )
    given = session.get_inputs()[0]
    ids = given.type == "tensor(int64)"
    dtype = np.int64 if ids else np.float32  # token ids, or values
    any_length = ids and len(given.shape) == 2 and isinstance(given.shape[1], str)
    return (lambda x: as_probabilities(session.run(None, {given.name: np.asarray(x, dtype)})[0]),
            any_length)  # fmt: skip


def torch_predictor(module) -> Predictor:
    """Wrap a torch module that returns logits or probabilities (or one value per input)."""
    import torch  # heavy: the registry and the service reach this module without torch

    def predict(x: np.ndarray) -> np.ndarray:
        outputs = []
        # Where the module lives (a network scored mid-training sits on the GPU)
        device = next(iter(module.parameters()), torch.empty(0)).device
        with torch.inference_mode():
            for start in range(0, len(x), 512):
                batch = torch.from_numpy(np.ascontiguousarray(x[start : start + 512]))
                out = module(batch.to(device)).float().cpu()
                one = out.shape[1] == 1  # a regression's value: no class to soften
                if not one and not torch.allclose(out.sum(dim=1), torch.ones(len(out)), atol=1e-3):
                    out = torch.softmax(out, dim=1)
                outputs.append(out.numpy())
        return np.concatenate(outputs)

    return predict
