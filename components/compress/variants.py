"""The compressed variants of a network: built, scored, timed, chosen, and shown side by side.

Variants (``compress.variants``): global magnitude pruning and structured pruning
(each fine-tuned), torch dynamic and static int8, the ONNX export and its ONNX
Runtime int8, and a distilled student with its ONNX Runtime int8. Each is scored
on the validation split, which decides (the accuracy budget), and on the test split,
which is only reported; each is timed on the CPU at batch 1 and 64. ``choose`` applies
``compress.choose``: ``fastest``, or ``smallest`` among those within
``compress.speed_tolerance`` of the fastest (timing noise). The student's baseline
(same net, no teacher) is measured for reference and never ships.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.core import families
from components.core.paths import Workspace
from components.core.splits import load_meta, load_split
from components.core.tasks import task_of
from components.core.timing import latency_ms

if TYPE_CHECKING:  # types only
    from components.core.config import CompressConfig, Params

log = logging.getLogger(__name__)

REFERENCES = frozenset({"student-baseline"})  # measured for comparison, never shipped
NO_STUDENT = "the model family makes no student (Family.student)"
# Distillation softens class probabilities (temperature, KL): a regression net answers a value
NO_VALUES = "a regression's net answers one value: no class probabilities to distil"


def not_for(family, spec=None, distill=None) -> dict[str, str]:
    """The variants ``family`` does not get, and why (``Family.skips``; no student, for
    this net where ``spec`` is given: no distilled variants)."""
    skips = dict(family.skips)
    if family.student is None or (spec is not None and family.student(spec, distill) is None):
        skips |= {"distilled": NO_STUDENT, "distilled-int8": NO_STUDENT}
    if spec is not None and spec.data.num_classes == 1:
        skips |= {"distilled": NO_VALUES, "distilled-int8": NO_VALUES}
    return skips


@dataclass(frozen=True)
class Variant:
    name: str
    format: str  # torch or onnx: what ships
    # The task's score (``metric``): accuracy, or a regression's RMSE; its drop against
    # fp32 is a loss of accuracy in points, or a regression's rise in RMSE as a share
    accuracy: float  # on the test split: reported, never deciding
    accuracy_drop: float  # against fp32, on the test split
    val_accuracy: float  # on the validation split: what the budget is held to
    val_drop: float  # against fp32, on the validation split
    size_bytes: int  # the shipped file
    parameters: int
    sparsity: float
    latency_ms: dict[str, float]  # "b1_p50", "b1_p95", "b64_p50", ...
    speedup: float  # fp32 p50 / this p50, at compress.latency_batch
    within_budget: bool
    build_seconds: float = 0.0  # pruning and its fine-tuning, a student's training, an export
    metric: str = "accuracy"  # or "RMSE" (a regression)


def stage_tuner(params: Params, ws: Workspace):
    """The fine-tuning after pruning: ``compress.finetune_*`` epochs on the CPU, cosine."""
    from components.compress import pruning
    from components.train.trainer import one_device

    cfg = params.compress
    train, val = load_split(ws.prepared, "train"), load_split(ws.prepared, "val")
    return pruning.fine_tuner(
        one_device(
            params.train,
            epochs=cfg.finetune_epochs_for(params.train.epochs),
            learning_rate=cfg.finetune_learning_rate,
            schedule="cosine",
            accelerator="cpu",
        ),  # fmt: skip
        params.seed,
        train,
        val,
        task_of(load_meta(ws.prepared)).objective,
    )


def build_variants(
    net, spec, params: Params, ws: Workspace, folder: Path, track=None
) -> dict[str, tuple]:
    """``{name: (runner, parameters, sparsity)}``, fp32 first; int8 built on the smallest net.

    ``spec`` is the champion's NetSpec (the distilled student is derived from it);
    ``track`` opens the students' nested runs (see ``components.distillation``).
    """
    import torch

    from components.compress import distillation, pruning, quantization

    cfg = params.compress
    train = load_split(ws.prepared, "train")
    tune = stage_tuner(params, ws)
    calibration = train.x[: cfg.calibration_samples].astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    out: dict[str, tuple] = {}

    clock = [time.perf_counter()]  # each variant's build time: since the last one was added

    def add_torch(name: str, module, counted=None) -> None:
        counted = counted or module  # quantized modules: count the float net they came from
        runner = quantization.torch_runner(module, folder / f"{name}.pt", calibration)
        built(name, runner, counted)

    def add_onnx(name: str, file: Path, counted) -> None:
        built(name, quantization.onnx_runner(file, threads), counted)

    def built(name: str, runner, counted) -> None:
        seconds = time.perf_counter() - clock[0]
        out[name] = runner, pruning.parameter_count(counted), pruning.sparsity(counted), seconds
        log.info(f"[compress] built {name} in {seconds:.1f}s ({len(out)} variants so far)")
        clock[0] = time.perf_counter()

    net = net.cpu().eval()
    add_torch("fp32", net)
    base, prefix = net, ""  # what the int8 variants start from
    family = families.get(spec.family)
    skips = not_for(family, spec, params.compress.distill)
    wanted = [v for v in cfg.variants if v not in skips]
    for skipped in sorted(set(cfg.variants) - set(wanted)):
        log.info(f"[compress] {skipped} not built for {family.name}: {skips[skipped]}")
    cfg = cfg.model_copy(update={"variants": wanted})
    if "pruned" in cfg.variants:
        add_torch("pruned", pruning.magnitude_prune(net, cfg.prune_amount, tune, cfg.prune_steps))
    if "structured" in cfg.variants:
        try:
            small = pruning.structured_prune(net, cfg.structured_amount)
        except ValueError as err:
            log.warning(f"[compress] structured pruning skipped: {err}")
        else:
            tune(small)
            add_torch("structured", small)
            base, prefix = small, "structured+"
    if "dynamic-int8" in cfg.variants:
        add_torch(f"{prefix}dynamic-int8", quantization.dynamic_int8(base), base)
    if "static-int8" in cfg.variants:
        add_torch(f"{prefix}static-int8", quantization.static_int8(base, calibration), base)
    if "onnx" in cfg.variants:
        exported = quantization.export_onnx(net, calibration, folder / "onnx.onnx", family)
        add_onnx("onnx", exported, net)
    sources = []  # (net, its family, name) for ONNX Runtime int8: the serving format
    if "onnx-int8" in cfg.variants:  # from the champion and the smaller net
        sources += [(net, family, "onnx-int8")]
        sources += [(base, family, f"{prefix}onnx-int8")] if prefix else []
    if {"distilled", "distilled-int8"} & set(cfg.variants):
        val = load_split(ws.prepared, "val")
        students = distillation.train_students(
            net, spec, params, train, val, track, with_baseline=cfg.report_baselines
        )
        if "distilled" in cfg.variants:
            add_torch("distilled", students.distilled)  # its time: both trainings
            if students.baseline is not None:
                add_torch("student-baseline", students.baseline)
        if "distilled-int8" in cfg.variants:
            student_family = families.get(students.spec.family)
            sources.append((students.distilled, student_family, "distilled+onnx-int8"))
    for source, source_family, name in sources:
        clock[0] = time.perf_counter()  # each ONNX int8 build on its own (not the students)
        file = quantization.net_to_onnx_int8(source, calibration, folder / f"{name}.onnx",
                                             source_family)  # fmt: skip
        add_onnx(name, file, source)
    return out


def measure(built: dict[str, tuple], cfg: CompressConfig, val, test, classes,
            served=lambda x: x, regression: bool = False) -> list[Variant]:  # fmt: skip
    """Score every variant on the validation split (deciding) and the test split (reported)
    and time it, the variants taking turns, on batches as the service gives them
    (``served``: ``DataKind.as_served``). A ``regression``'s score is RMSE, and its budget
    ``compress.max_rmse_increase``: the validation RMSE's rise as a share of fp32's."""
    x = test.x
    batches = sorted({1, 64, cfg.latency_batch})
    timings: dict[str, dict[str, float]] = {name: {} for name in built}
    for batch in batches:
        example = served(x[:batch]).astype(np.float32)
        # The batch that chooses gets every repeat; the others are reported, and a quarter
        # of the repeats (at least 20) give their p50 and p95 at a quarter of the cost.
        repeats = cfg.latency_repeats if batch == cfg.latency_batch else max(
            20, cfg.latency_repeats // 4)  # fmt: skip
        for name, (runner, *_) in built.items():
            p50, p95 = latency_ms(runner.predict, example, repeats)
            timings[name].update({f"b{batch}_p50": p50, f"b{batch}_p95": p95})
    key = f"b{cfg.latency_batch}_p50"
    variants, base = [], None
    scored = rmse_of if regression else accuracy_of
    budget = cfg.max_rmse_increase if regression else cfg.max_accuracy_drop
    for name, (runner, parameters, sparsity, seconds) in built.items():
        acc = scored(runner, test, served)
        val_acc = scored(runner, val, served)
        base = base or (acc, timings[name][key], val_acc)
        if regression:  # a rise in RMSE, as a share of fp32's
            drop, val_drop = (acc - base[0]) / base[0], (val_acc - base[2]) / base[2]
        else:
            drop, val_drop = base[0] - acc, base[2] - val_acc
        variants.append(
            Variant(
                name=name,
                format=runner.format,
                accuracy=acc,
                accuracy_drop=drop,
                val_accuracy=val_acc,
                val_drop=val_drop,
                size_bytes=runner.file.stat().st_size,
                parameters=parameters,
                sparsity=sparsity,
                latency_ms=timings[name],
                speedup=base[1] / timings[name][key],
                within_budget=val_drop <= budget + 1e-9,
                build_seconds=seconds,
                metric="RMSE" if regression else "accuracy",
            )
        )
    return variants


def accuracy_of(runner, split, served) -> float:
    return float(np.mean(outputs(runner, split.x, served).argmax(axis=1) == split.y))


def rmse_of(runner, split, served) -> float:
    """A regression variant's RMSE (floored: a perfect fit on a split leaves no share)."""
    value = outputs(runner, split.x, served)[:, 0]
    return max(float(np.sqrt(np.mean((value - split.y) ** 2))), 1e-12)


def outputs(runner, x: np.ndarray, served, rows: int = 256) -> np.ndarray:
    """What ``runner`` answers for each row (class probabilities, or one value), ``rows``
    at a time as the service gives them: a whole split in one call holds every row's
    activations at once (MiniLM's ONNX export on SMS's 776 val texts: a peak of 1.9 GB at
    once, 1.1 GB 256 at a time)."""
    from components.core.predict import as_probabilities

    parts = [as_probabilities(runner.predict(served(x[s : s + rows])))
             for s in range(0, len(x), rows)]  # fmt: skip
    return np.concatenate(parts) if parts else np.zeros((0, 1))


def choose(variants: list[Variant], rule: str = "smallest", tolerance: float = 0.1):
    """Among the variants within budget (on validation) faster than fp32 (the first) by more
    than ``tolerance``: the fastest (``rule`` fastest), or the smallest of those within
    ``tolerance`` of the fastest (``rule`` smallest). Timing noise decides nothing: a variant
    1.01x "faster" than fp32 ships nothing. None if none fits."""
    fp32, *others = variants
    fit = [v for v in others if v.within_budget and v.speedup > 1.0 + tolerance
           and v.name not in REFERENCES]  # fmt: skip
    if not fit:
        return None
    fastest = max(fit, key=lambda v: v.speedup)
    if rule == "fastest":
        return fastest
    return min((v for v in fit if v.speedup >= fastest.speedup * (1 - tolerance)),
               key=lambda v: v.size_bytes)  # fmt: skip


def table(variants: list[Variant], chosen: str | None) -> str:
    """The compression report as a Markdown table."""
    base = variants[0]
    if base.metric != "accuracy":  # a regression: RMSE, and its rise as a share of fp32's
        return regression_table(variants, chosen)
    rows = [
        "| variant | format | val accuracy | val drop | test accuracy | test drop | size KiB"
        " | smaller | params | sparsity | b1 p50 ms | b1 p95 ms | b64 p50 ms | b64 p95 ms"
        " | speedup | build s | |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        ms = v.latency_ms
        note = "shipped" if v.name == chosen else ("" if v.within_budget else "over budget")
        note = "reference (no teacher)" if v.name in REFERENCES else note
        rows.append(
            f"| {v.name} | {v.format} | {v.val_accuracy:.4f} | {v.val_drop * 100:+.2f} pt"
            f" | {v.accuracy:.4f} | {v.accuracy_drop * 100:+.2f} pt"
            f" | {v.size_bytes / 1024:.1f} | {base.size_bytes / v.size_bytes:.1f}x"
            f" | {v.parameters:,} | {v.sparsity:.2f} | {ms['b1_p50']:.3f} | {ms['b1_p95']:.3f}"
            f" | {ms['b64_p50']:.3f} | {ms['b64_p95']:.3f} | {v.speedup:.2f}x"
            f" | {v.build_seconds:.1f} | {note} |"
        )
    return "\n".join(rows) + "\n"


def regression_table(variants: list[Variant], chosen: str | None) -> str:
    """A regression's compression report: RMSE and its rise against fp32, as a share."""
    base = variants[0]
    rows = ["| variant | format | val RMSE | val rise | test RMSE | test rise | size KiB | smaller"
            " | params | b1 p50 ms | b64 p50 ms | speedup | build s | |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for v in variants:
        ms = v.latency_ms
        note = "shipped" if v.name == chosen else ("" if v.within_budget else "over budget")
        rows.append(
            f"| {v.name} | {v.format} | {v.val_accuracy:.4f} | {v.val_drop * 100:+.2f}%"
            f" | {v.accuracy:.4f} | {v.accuracy_drop * 100:+.2f}%"
            f" | {v.size_bytes / 1024:.1f} | {base.size_bytes / v.size_bytes:.1f}x"
            f" | {v.parameters:,} | {ms['b1_p50']:.3f} | {ms['b64_p50']:.3f} | {v.speedup:.2f}x"
            f" | {v.build_seconds:.1f} | {note} |"
        )
    return "\n".join(rows) + "\n"


def plot(variants: list[Variant], chosen: str | None, path: Path) -> Path:
    """Accuracy against batch-1 latency and against size: the trade-off at a glance.

    Points carry numbers, not names (the key on the right names them), and a number that
    would land on another is moved up until it does not: variants often sit close."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"right": 0.78})
    for ax, label, value in (
        (axes[0], "CPU latency p50 at batch 1 (ms)", lambda v: v.latency_ms["b1_p50"]),
        (axes[1], "size on disk (KiB)", lambda v: v.size_bytes / 1024),
    ):
        for v in variants:
            color = (
                "tab:green" if v.name == chosen else ("tab:blue" if v.within_budget else "tab:red")
            )
            ax.scatter(value(v), v.accuracy, color=color, s=60 if v.name == chosen else 30)
        ax.axhline(variants[0].accuracy - variants[0].accuracy_drop, color="grey", lw=0.5)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # 2x10^-2 3x10^-2 ... ran together
        ax.set_xlabel(label)
        ax.set_ylabel(f"test {variants[0].metric}")
        fig.canvas.draw()  # the axes' limits are final: positions in pixels are known
        pixels = [ax.transData.transform((value(v), v.accuracy)) for v in variants]
        offsets = label_offsets(pixels, fig.dpi / 72)
        for number, (v, dy) in enumerate(zip(variants, offsets, strict=True), start=1):
            ax.annotate(str(number), (value(v), v.accuracy), fontsize=7, xytext=(4, dy),
                        textcoords="offset points",
                        arrowprops={"arrowstyle": "-", "lw": 0.4} if dy > 3 else None)  # fmt: skip
    key = "\n".join(f"{n:>2}  {v.name}" for n, v in enumerate(variants, start=1))
    fig.text(0.8, 0.5, key, fontsize=8, va="center", family="monospace")
    fig.suptitle("compression variants (green: shipped, red: over the accuracy budget)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def label_offsets(points, px_per_pt: float, width: float = 14, line: float = 9) -> list[float]:
    """How far above its point (in points) each label goes so that no two overlap: a label
    that would land on an earlier one (``width`` x ``line`` points) moves up a line."""
    taken: list[tuple[float, float]] = []
    offsets = []
    w, h = width * px_per_pt, line * px_per_pt  # a label's box, in pixels
    for x, y in points:
        dy = 3.0
        while any(abs(x - tx) < w and abs(y + dy * px_per_pt - ty) < h for tx, ty in taken):
            dy += line
        taken.append((x, y + dy * px_per_pt))
        offsets.append(dy)
    return offsets
