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

from components.core import families
from components.core.splits import Split

if TYPE_CHECKING:  # types only
    from components.core.config import DistillConfig, Params
    from components.core.families import NetSpec

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


def student_spec(teacher: NetSpec, cfg: DistillConfig) -> NetSpec | None:
    """The student of ``teacher``'s family (``Family.student``: smaller, or an MLP as ``cfg``
    says; a text encoder's is DistilBERT's half depth); None where the family has none."""
    make = families.get(teacher.family).student
    return None if make is None else make(teacher, cfg)


def train_students(
    teacher, teacher_spec: NetSpec, params: Params, train: Split, val: Split,
    track: Track | None = None, with_baseline: bool = True,
) -> Students:  # fmt: skip
    """The distilled student and, ``with_baseline``, its no-teacher baseline: the same
    architecture, seed, start and epochs (``compress.distill.epochs``)."""
    import torch

    from components.compress.pruning import parameter_count
    from components.train.data import SplitData
    from components.train.models import build_net
    from components.train.objectives import Distill, Optimizer
    from components.train.trainer import Fitting, fit, one_device, train_classifier

    cfg = params.compress.distill
    spec = student_spec(teacher_spec, cfg)
    if spec is None:
        raise ValueError(f"model family {teacher_spec.family!r} makes no student: leave the"
                         " distilled variants out of compress.variants")  # fmt: skip
    torch.manual_seed(params.seed)
    family = families.get(teacher_spec.family)
    from_teacher = family.student_start
    if from_teacher is not None:  # from the teacher's own layers (the baseline too)
        start = from_teacher(teacher, spec)
    else:
        start = build_net(spec).state_dict()
    soft = teacher_logits(teacher, train.x)  # once: every epoch reads these
    # A pretrained family's student fine-tunes every weight, as its full mode does (its
    # learning rate, epochs and schedule), not at compress.distill's from-scratch 3e-3
    tuned = family.overrides(teacher_spec.options, "full") if family.overrides else {}
    epochs = cfg.epochs_for(tuned.get("epochs", params.train.epochs))
    rate = tuned.get("learning_rate", cfg.learning_rate)
    train_cfg = one_device(params.train, **{**tuned, "epochs": epochs, "learning_rate": rate})
    logged = {
        "student.family": spec.family,
        **{f"student.{k}": v for k, v in dataclasses.asdict(spec.options).items()},
        "student.parameters": parameter_count(build_net(spec, weights_follow=True)),
        "teacher.parameters": parameter_count(teacher),
        "temperature": cfg.temperature, "alpha": cfg.alpha, "epochs": epochs,
        "learning_rate": rate, "seed": params.seed,
    }  # fmt: skip
    nets, vals = {}, {}
    trainings = ["distill"] + (["student-baseline"] if with_baseline else [])
    for name in trainings:
        net = build_net(spec, weights_follow=True)
        net.load_state_dict(start)
        taught = name == "distill"
        run_params = logged if taught else {**logged, "alpha": 0.0, "temperature": None}
        context = track(name, run_params) if track else contextlib.nullcontext()
        with context as run:
            on_epoch = run.log_epoch if run is not None else None
            if taught:  # the teacher's logits ride along with each training batch
                student = Distill(net, Optimizer.of(train_cfg), cfg.temperature, cfg.alpha)
                data = SplitData(train, val, train_cfg.batch_size, params.seed, extra=soft)
                result = fit(student, data, Fitting(train_cfg, params.seed, on_epoch))
            else:
                result = train_classifier(net, train_cfg, params.seed, train, val,
                                          on_epoch=on_epoch)  # fmt: skip
            vals[name] = result.history[-1]["val/acc"]
            if run is not None:
                run.log_metrics({"final_val_acc": vals[name]})
        nets[name] = result.net
    return Students(nets["distill"], nets.get("student-baseline"), spec, vals["distill"],
                    vals.get("student-baseline"))  # fmt: skip
