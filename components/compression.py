"""The ``compress`` stage: magnitude pruning plus int8 quantization of the champion.

Each variant (the fp32 champion, pruned, pruned + int8) is scored on the test
split and timed on the CPU; the report says which stay inside the accuracy
budget (``compress.max_accuracy_drop``). The pruned + int8 variant is saved
under ``models/compressed/``.
"""

from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.config import CompressConfig, Params
from components.data import load_meta, load_split
from components.paths import Workspace
from components.records import write_json


@dataclass(frozen=True)
class Variant:
    name: str
    accuracy: float
    accuracy_drop: float
    size_bytes: int
    latency_p50_ms: float
    latency_p95_ms: float
    sparsity: float
    within_budget: bool


@dataclass(frozen=True)
class CompressionResult:
    champion_version: str
    variants: list[Variant]
    model_file: Path
    report: Path

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)

    def summary(self) -> str:
        base, last = self.variants[0], self.variants[-1]
        return (
            f"{last.name}: accuracy {last.accuracy:.4f} (fp32 {base.accuracy:.4f}),"
            f" {base.size_bytes / last.size_bytes:.1f}x smaller,"
            f" {base.latency_p50_ms / last.latency_p50_ms:.2f}x latency speedup;"
            f" report {self.report}"
        )


def prunable(net) -> list[tuple[object, str]]:
    from torch import nn

    return [(m, "weight") for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def magnitude_prune(net, amount: float):
    """Global unstructured L1 pruning of conv and dense weights, made permanent."""
    from torch.nn.utils import prune

    pruned = copy.deepcopy(net)
    targets = prunable(pruned)
    if amount > 0:
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
        for module, name in targets:
            prune.remove(module, name)
    return pruned


def sparsity(net) -> float:
    weights = [m.weight.detach() for m, _ in prunable(net)]
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / max(1, sum(w.numel() for w in weights))


def quantize_int8(net):
    """Dynamic int8 quantization of the dense layers (weights int8, activations on the fly)."""
    import torch
    from torch import nn

    return torch.ao.quantization.quantize_dynamic(copy.deepcopy(net), {nn.Linear}, torch.qint8)


def size_on_disk(module) -> int:
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.pt"
        torch.save(module.state_dict(), path)
        return path.stat().st_size


def latency_ms(module, example: np.ndarray, repeats: int) -> tuple[float, float]:
    """p50 and p95 wall time of one forward pass on the CPU, after a warm-up."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(example))
    times = []
    with torch.inference_mode():
        for _ in range(10):
            module(x)
        for _ in range(repeats):
            start = time.perf_counter()
            module(x)
            times.append((time.perf_counter() - start) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def compress(net, cfg: CompressConfig, x: np.ndarray, y: np.ndarray, classes: list):
    """Build and measure the variants; returns ``(variants, compressed_module)``."""
    from components.evaluation import score, torch_predictor

    net = net.cpu().eval()
    pruned = magnitude_prune(net, cfg.prune_amount).eval()
    final = quantize_int8(pruned) if cfg.quantization == "dynamic-int8" else pruned
    candidates = {"fp32": net, "pruned": pruned}
    if cfg.quantization != "none":
        candidates[f"pruned+{cfg.quantization}"] = final

    example = x[: cfg.latency_batch].astype(np.float32)
    variants = []
    base_acc = None
    for name, module in candidates.items():
        acc = score(y, torch_predictor(module)(x), classes).accuracy
        base_acc = acc if base_acc is None else base_acc
        p50, p95 = latency_ms(module, example, cfg.latency_repeats)
        drop = base_acc - acc
        variants.append(
            Variant(
                name=name,
                accuracy=acc,
                accuracy_drop=drop,
                size_bytes=size_on_disk(module),
                latency_p50_ms=p50,
                latency_p95_ms=p95,
                sparsity=sparsity(pruned) if module is not net else sparsity(net),
                within_budget=drop <= cfg.max_accuracy_drop,
            )
        )
    return variants, final


def print_table(variants: list[Variant]) -> None:
    base = variants[0]
    header = ("accuracy", "size KiB", "p50 ms", "speedup", "sparsity")
    print(f"  {'variant':<20}" + "".join(f"{h:>9}" for h in header))
    for v in variants:
        speed = base.latency_p50_ms / v.latency_p50_ms if v.latency_p50_ms else float("nan")
        print(
            f"  {v.name:<20}{v.accuracy:>9.4f}{v.size_bytes / 1024:>10.1f}"
            f"{v.latency_p50_ms:>9.3f}{speed:>8.2f}x{v.sparsity:>9.2f}"
            + ("" if v.within_budget else "  (over accuracy budget)")
        )


def champion_weights(name: str, version: str) -> Path:
    """Download the trained weights logged beside a registered version's model."""
    import mlflow

    from components.training import WEIGHTS_FOLDER

    run_id = mlflow.MlflowClient().get_model_version(name, version).run_id
    folder = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=WEIGHTS_FOLDER)
    return Path(folder) / "model.pt"


def compress_stage(params: Params, ws: Workspace) -> CompressionResult:
    import mlflow
    import torch

    from components import tracking
    from components.models import load_net
    from components.registry import CHAMPION, alias_version

    name = params.register_.model_name
    version = alias_version(mlflow.MlflowClient(), name, CHAMPION)
    if version is None:
        raise RuntimeError(f"no {CHAMPION} version of {name!r}; run the register stage first")
    net, _ = load_net(champion_weights(name, version))

    test = load_split(ws.prepared, "test")
    classes = load_meta(ws.prepared)["classes"]
    variants, compressed = compress(net, params.compress, test.x, test.y, classes)
    print_table(variants)

    ws.compressed_dir.mkdir(parents=True, exist_ok=True)
    model_file = ws.compressed_dir / "model.pt"
    torch.save(compressed, model_file)
    result = CompressionResult(version, variants, model_file, ws.report("compression.json"))
    write_json(result.report, result)

    with tracking.start_run(
        ws,
        params.data.name,
        run_name=f"compress-v{version}",
        tags={"mloop.parent_model": f"{name}/{version}"},
    ) as run:
        run.log_params({f"compress.{k}": v for k, v in params.compress.model_dump().items()})
        for v in variants:
            prefix = v.name.replace("+", "_")
            run.log_metrics(
                {
                    f"{prefix}.accuracy": v.accuracy,
                    f"{prefix}.size_bytes": v.size_bytes,
                    f"{prefix}.latency_p50_ms": v.latency_p50_ms,
                    f"{prefix}.latency_p95_ms": v.latency_p95_ms,
                }
            )
        run.log_artifact(result.report)
    return result
