"""Quantization and export: the int8 paths compared by the compression stage.

- ``dynamic_int8``: torch.ao dynamic quantization of dense layers (weights int8,
  activations quantized on the fly).
- ``static_int8``: torch.ao FX post-training static quantization (x86 backend),
  calibrated on training samples; covers the convs too.
- ``export_onnx`` / ``onnx_int8``: ONNX export of the network (probabilities out)
  and ONNX Runtime's static QDQ int8 quantization, calibrated the same way;
  ``net_to_onnx_int8`` does both for a torch network. A text encoder exports with its
  sequence length free too, and ``net_to_onnx_int8`` quantizes it as BERT is
  (``onnx_dynamic_int8``: no calibration).

Every variant comes back as a ``ShippedVariant``: a CPU predictor plus the file it ships as.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class ShippedVariant:
    """One variant as it would be served: ``predict`` maps inputs to probabilities."""

    format: str  # "torch" or "onnx"
    predict: Callable[[np.ndarray], np.ndarray]
    file: Path  # what ships: a TorchScript file or an ONNX file
    model: object  # the TorchScript module, or the ONNX file's path


def torch_runner(module, file: Path, example: np.ndarray) -> ShippedVariant:
    """A torch module on the CPU, traced to TorchScript and saved to ``file``: loading it
    needs no mloop code, and FX-quantized modules (which do not pickle) save too."""
    import torch

    from components.train.models import Probabilities

    with torch.inference_mode():
        served = torch.jit.trace(Probabilities(module).eval(), torch.from_numpy(example[:2]))
    torch.jit.save(served, str(file))

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return served(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    return ShippedVariant("torch", predict, file, served)


def onnx_runner(file: Path, threads: int | None = None) -> ShippedVariant:
    """An ONNX Runtime CPU session over ``file``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    dtype = np.int64 if session.get_inputs()[0].type == "tensor(int64)" else np.float32  # ids

    def predict(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(x, dtype=dtype)})[0]

    return ShippedVariant("onnx", predict, file, file)


def dynamic_int8(net):
    import torch
    from torch import nn

    return torch.ao.quantization.quantize_dynamic(copy.deepcopy(net), {nn.Linear}, torch.qint8)


def static_int8(net, calibration: np.ndarray):
    """FX graph-mode static int8 (x86 backend), observers calibrated on ``calibration``."""
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    example = (torch.from_numpy(calibration[:1]),)
    prepared = prepare_fx(copy.deepcopy(net).eval(), get_default_qconfig_mapping("x86"), example)
    with torch.inference_mode():
        for start in range(0, len(calibration), 64):
            prepared(torch.from_numpy(calibration[start : start + 64]))
    return convert_fx(prepared)


def export_onnx(net, example: np.ndarray, file: Path, family) -> Path:
    """The network with a softmax head, batch size left free; for a family that reads token
    ids (``Family.token_ids``) the sequence length too (int64, any length up to its
    ``max_length``)."""
    import torch

    from components.train.models import Probabilities

    ids = family.reads_ids(net)
    axes = {0: "batch", 1: "sequence"} if ids else {0: "batch"}
    inputs = torch.from_numpy(example[:1].astype(np.int64) if ids else example[:1])
    torch.onnx.export(
        Probabilities(copy.deepcopy(net)).eval(),
        (inputs,),
        str(file),
        input_names=["inputs"],
        output_names=["probabilities"],
        dynamic_axes={"inputs": axes, "probabilities": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return file


LEFT_DATA = "????????-????-????-????-????????????.data"  # onnx's external data, by uuid1


def onnx_dynamic_int8(source: Path, file: Path) -> Path:
    """ONNX Runtime dynamic int8: weights of the MatMul/Gemm layers in int8, activations
    quantized on the fly per batch (the BERT recipe: no calibration data needed)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = file.with_suffix(".pre.onnx")
    before = set(Path.cwd().glob(LEFT_DATA))
    with contextlib.redirect_stdout(io.StringIO()):  # its progress lines say nothing useful
        try:
            quant_pre_process(str(source), str(prepared))
        except Exception:  # noqa: BLE001 -- its symbolic shape inference gives up on some
            # graphs (a Hugging Face BERT's), leaving its attempt in the working folder: the
            # model and its weights in a file named by a fresh uuid
            for left in [*Path.cwd().glob("sym_shape_infer_temp.onnx*"),
                         *set(Path.cwd().glob(LEFT_DATA)) - before]:  # fmt: skip
                left.unlink(missing_ok=True)
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    try:
        quantize_dynamic(str(prepared), str(file), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm"])  # fmt: skip
    finally:
        prepared.unlink()
    return file


def onnx_int8(source: Path, calibration: np.ndarray, file: Path) -> Path:
    """ONNX Runtime static int8 (QDQ, per-channel weights), calibrated on ``calibration``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                {"inputs": calibration[i : i + 64]} for i in range(0, len(calibration), 64)
            )

        def get_next(self):
            return next(self.batches, None)

    import onnx

    prepared = file.with_suffix(".pre.onnx")
    with contextlib.redirect_stdout(io.StringIO()):  # its progress lines say nothing useful
        quant_pre_process(str(source), str(prepared))
    # The softmax head stays float: served probabilities keep their precision.
    softmax = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Softmax"]
    quantize_static(
        str(prepared),
        str(file),
        Batches(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=softmax,
    )
    prepared.unlink()
    return file


def net_to_onnx_int8(net, calibration: np.ndarray, file: Path, family) -> Path:
    """``net`` exported (``export_onnx``) and quantized to ``file`` as its family says
    (``Family.onnx_int8``): static int8 (``onnx_int8``), or BERT's dynamic int8
    (``onnx_dynamic_int8``: weights int8, activations quantized per batch as they come;
    a text encoder's). The float export in between is removed."""
    exported = export_onnx(net, calibration, file.with_suffix(".fp32.onnx"), family)
    try:
        if family.onnx_int8 == "dynamic":
            return onnx_dynamic_int8(exported, file)
        return onnx_int8(exported, calibration, file)
    finally:
        exported.unlink()
