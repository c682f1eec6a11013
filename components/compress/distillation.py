"""Knowledge distillation: a smaller student trained to imitate the champion.

The champion is the teacher. Its logits for the whole training split are computed
in one pass (``teacher_logits``) and ride along with the training batches, so no
epoch runs the teacher again. The student (``student_spec``: the teacher's family
with fewer channels and units, or an MLP) trains in Lightning on the loss mix of
``components.lit.distillation_loss``. With ``compress.report_baselines`` (and in
``benchmarks/compression.py``) a baseline of the same architecture, seed, initial
weights and epochs trains on the labels alone, so the report shows what the teacher
itself bought. Needs only torch, lightning and numpy.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from components.core.splits import Split
from components.train.trainer import Teacher

if TYPE_CHECKING:  # types only
    from components.core.config import DistillConfig, Params
    from components.train.models import NetSpec

# track(run_name, params) -> a context manager yielding something with log_epoch(epoch,
# metrics) and log_metrics(metrics), or None: the compress stage passes nested MLflow runs.
Track = Callable[[str, dict[str, object]], contextlib.AbstractContextManager]


@dataclass(frozen=True)
class Students:
    distilled: object  # torch.nn.Module, CPU, eval
    baseline: object | None  # the same architecture on the labels alone (reference only)
    spec: NetSpec
    distilled_val: float  # validation accuracy after the last epoch
    baseline_val: float | None


def teacher_logits(teacher, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """The teacher's logits for every row of ``x``, in order: one pass, eval mode, CPU."""
    import torch

    teacher = teacher.cpu().eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size]))
            out.append(teacher(chunk.float()).float().numpy())
    return np.concatenate(out).astype(np.float32)


def student_spec(teacher: NetSpec, cfg: DistillConfig) -> NetSpec:
    """The teacher's network description, made smaller (or an MLP) as ``cfg`` says. A text
    encoder's student is DistilBERT's: the same width, half the blocks."""
    common = {"dropout": cfg.dropout, "mlp_layers": tuple(cfg.mlp_layers)}
    if teacher.kind == "transformer":
        return dataclasses.replace(teacher, depth=max(1, teacher.depth // 2), dropout=cfg.dropout)
    if cfg.student == "mlp":
        return dataclasses.replace(teacher, kind="mlp", **common)
    return dataclasses.replace(
        teacher, conv_width=cfg.width, hidden=cfg.hidden,
        resnet_blocks=tuple(1 for _ in teacher.resnet_blocks), **common,
    )  # fmt: skip


def half_depth_start(teacher, spec: NetSpec) -> dict:
    """DistilBERT's initialisation of a half-depth student: the teacher's embeddings, final
    norm and heads, and one block of every two (blocks 0, 2, 4, ...)."""
    state = {k: v.clone() for k, v in teacher.state_dict().items()
             if not k.startswith("blocks.")}  # fmt: skip
    for i in range(spec.depth):
        prefix = f"blocks.{2 * i}."
        for key, value in teacher.state_dict().items():
            if key.startswith(prefix):
                state[f"blocks.{i}." + key.removeprefix(prefix)] = value.clone()
    return state


def train_students(
    teacher, teacher_spec: NetSpec, params: Params, train: Split, val: Split,
    track: Track | None = None, with_baseline: bool = True,
) -> Students:  # fmt: skip
    """The distilled student and, ``with_baseline``, its no-teacher baseline: the same
    architecture, seed, start and epochs (``compress.distill.epochs``)."""
    import torch

    from components.compress.pruning import parameter_count
    from components.train.models import build_net
    from components.train.trainer import fit, one_device

    cfg = params.compress.distill
    spec = student_spec(teacher_spec, cfg)
    torch.manual_seed(params.seed)
    start = build_net(spec).state_dict()
    if spec.kind == "transformer":  # from the teacher's own layers (the baseline too)
        start = half_depth_start(teacher, spec)
    soft = teacher_logits(teacher, train.x)  # once: every epoch reads these
    epochs = cfg.epochs_for(params.train.epochs)
    train_cfg = one_device(params.train, epochs=epochs, learning_rate=cfg.learning_rate)
    logged = {
        "student.kind": spec.kind, "student.width": spec.conv_width,
        "student.hidden": spec.hidden, "student.mlp_layers": list(spec.mlp_layers),
        "student.parameters": parameter_count(build_net(spec)),
        "teacher.parameters": parameter_count(teacher),
        "temperature": cfg.temperature, "alpha": cfg.alpha, "epochs": epochs,
        "learning_rate": cfg.learning_rate, "seed": params.seed,
    }  # fmt: skip
    nets, vals = {}, {}
    trainings = [("distill", Teacher(soft, cfg.temperature, cfg.alpha))]
    trainings += [("student-baseline", None)] if with_baseline else []
    for name, mentor in trainings:
        net = build_net(spec)
        net.load_state_dict(start)
        run_params = logged if mentor else {**logged, "alpha": 0.0, "temperature": None}
        context = track(name, run_params) if track else contextlib.nullcontext()
        with context as run:
            on_epoch = run.log_epoch if run is not None else None
            result = fit(net, train_cfg, params.seed, train, val, on_epoch, teacher=mentor)
            vals[name] = result.history[-1]["val/acc"]
            if run is not None:
                run.log_metrics({"final_val_acc": vals[name]})
        nets[name] = result.net
    return Students(nets["distill"], nets.get("student-baseline"), spec, vals["distill"],
                    vals.get("student-baseline"))  # fmt: skip
