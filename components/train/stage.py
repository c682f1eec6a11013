"""The ``train`` stage: ``fit`` (``trainer.py``) with the workspace's files and MLflow tracking."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.core import families
from components.core.paths import Workspace
from components.core.records import read_json, write_json
from components.core.splits import load_meta, load_split

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    from components.core.config import Params
from components.core.tasks import task_of
from components.train.baseline import train_baselines
from components.train.data import SplitData
from components.train.objectives import OBJECTIVES
from components.train.trainer import Fitting, fit, global_rank, net_spec, train_classifier

log = logging.getLogger(__name__)

WEIGHTS_FOLDER = "weights"


@dataclass(frozen=True)
class TrainResult:
    model_file: Path
    run_id: str
    model_uri: str
    val_accuracy: float  # nan for a regression
    epochs: int
    seconds: float
    device: str
    val_rmse: float | None = None  # a regression's, in the label's units

    def summary(self) -> str:
        if not self.run_id:
            return f"DDP worker done after {self.epochs} epochs (rank zero tracks the run)"
        val = (f"val accuracy {self.val_accuracy:.4f}" if self.val_rmse is None else
               f"val RMSE {self.val_rmse:.4f}")  # fmt: skip
        return (
            f"{val} after {self.epochs} epochs"
            f" ({self.seconds:.1f}s on {self.device}); MLflow run {self.run_id}"
        )


def train_stage(params: Params, ws: Workspace, resume: bool = False) -> TrainResult:
    """Train on the prepared splits, track the run in MLflow, save the weights.

    A checkpoint is written every epoch; ``resume`` continues the last run from
    its checkpoint, in the same MLflow run. Under DDP only rank zero tracks and
    writes files.
    """
    import shutil

    import torch

    from components.core import tracking
    from components.train.models import Probabilities, build_net, save_net

    meta = load_meta(ws.prepared)
    train, val = load_split(ws.prepared, "train"), load_split(ws.prepared, "val")
    spec = net_spec(params, meta, train)
    torch.manual_seed(params.seed)
    net = build_net(spec)
    family = families.get(spec.family)
    if family.adapt is not None:  # a pretrained family: train.finetune (full, frozen, lora)
        net = family.adapt(net, params.train.finetune, spec.options)
    last, run_file = ws.checkpoints / "last.ckpt", ws.checkpoints / "run.json"
    resume_from, run_id = None, None
    if resume:
        if not last.is_file() or not run_file.is_file():
            raise FileNotFoundError(f"{last}: no checkpoint to resume from; train first")
        resume_from, run_id = last, read_json(run_file, "train")["run_id"]

    cfg = params.train

    def trained(run_fit: Fitting):
        """``net`` fitted by its task's objective (every rank the same)."""
        objective = OBJECTIVES[task_of(meta).objective](net, cfg, train.y)
        return fit(objective, SplitData(train, val, cfg.batch_size, params.seed), run_fit)

    if global_rank() != 0:  # a DDP worker: train, and leave tracking and files to rank zero
        if not resume:
            pretrain_texts(net, spec, params, ws, train, val, None, None)
        result = trained(Fitting(cfg, params.seed, checkpoint_dir=ws.checkpoints,
                                 resume_from=resume_from))  # fmt: skip
        return TrainResult(ws.model_file, "", "", float("nan"), result.epochs, result.seconds,
                           result.device)  # fmt: skip

    if not resume:
        shutil.rmtree(ws.checkpoints, ignore_errors=True)
    ws.checkpoints.mkdir(parents=True, exist_ok=True)
    with tracking.start_run(
        ws,
        experiment=params.data.name,
        run_name=f"train-{spec.family}",
        tags={
            **tracking.lineage_tags(ws, params, meta),
            **pretrained_lineage(family, spec, params),
        },
        run_id=run_id,
        system_metrics=True,
    ) as run:
        write_json(run_file, {"run_id": run.run_id})
        logs = tensorboard_dir(ws, f"train-{spec.family}", run.run_id)
        if not resume:
            run.log_params(params.flat())
            trains = sum(p.numel() for p in net.parameters() if p.requires_grad)
            run.log_metrics({"trainable_params": trains,
                             "params": sum(p.numel() for p in net.parameters())})  # fmt: skip
            pretrain_texts(net, spec, params, ws, train, val, run, logs)
        what = f"{spec.family} on {len(train)} samples for {params.train.epochs} epochs"
        log.info(f"resuming {what} from {last}" if resume else f"training {what}")
        result = trained(Fitting(cfg, params.seed, run.log_epoch, ws.checkpoints, resume_from,
                                 logs))  # fmt: skip
        run.set_tags({"device": result.device})
        run.log_metrics({"train_seconds": result.seconds})
        ws.models.mkdir(parents=True, exist_ok=True)
        final = family.settle(result.net) if family.settle else result.net  # LoRA merged
        save_net(final, spec, ws.model_file)
        run.log_artifact(ws.model_file, WEIGHTS_FOLDER)  # what compression rebuilds from
        run.log_tokenizer(ws, meta)
        if result.history:
            run.log_artifact(plot_learning_curves(result.history, ws.report("learning_curves.png")))
        example = np.ascontiguousarray(val.x[:4], dtype=np.float32)
        model_uri = run.log_torch_model(Probabilities(final), example)

    last = result.history[-1] if result.history else {}
    val_acc, val_rmse = last.get("val/acc", float("nan")), last.get("val/rmse")
    record = TrainResult(
        val_rmse=None if val_rmse is None else float(val_rmse),
        model_file=ws.model_file,
        run_id=run.run_id,
        model_uri=model_uri,
        val_accuracy=float(val_acc),
        epochs=result.epochs,
        seconds=result.seconds,
        device=result.device,
    )
    write_json(ws.train_record, record)
    return record


def pretrained_lineage(family, spec, params: Params) -> dict[str, str]:
    """What a pretrained family's model was fine-tuned from, and how (its MLflow tags)."""
    if family.lineage is None:
        return {}
    return {**family.lineage(spec.options), "mloop.finetune": params.train.finetune}


@dataclass(frozen=True)
class Skipped:
    """A step with nothing to do here, and why."""

    reason: str

    def summary(self) -> str:
        return f"skipped: {self.reason}"


@dataclass(frozen=True)
class Baselines:
    """What the baseline step fitted: each a challenger like the network."""

    fitted: list

    def summary(self) -> str:
        return "; ".join(b.summary() for b in self.fitted)


def baseline_step(params: Params, ws: Workspace):
    """The models a user would pick instead (trees and a linear model for tables, TF-IDF
    for texts), each fitted on the same split in its own MLflow run: challengers like the
    network."""
    fitted = train_baselines(params, ws)
    if fitted:
        return Baselines(fitted)
    return Skipped(f"no baseline for {load_meta(ws.prepared)['kind']} data"
                   f" (train.baseline: {params.train.baseline})")  # fmt: skip


def pretraining_report_step(params: Params, ws: Workspace):
    """With ``train.pretrain_report``: what pre-training bought (``report_pretraining``),
    logged to the training run."""
    import torch

    from components.core import tracking
    from components.train.models import build_net, load_net

    if not (params.train.pretrain_epochs and params.train.pretrain_report):
        return Skipped("train.pretrain_report is off (or train.pretrain_epochs is 0)")
    pretrained, spec = load_net(ws.model_file)
    torch.manual_seed(params.seed)  # the train stage's start, drawn again
    start = build_net(spec)
    train, val = load_split(ws.prepared, "train"), load_split(ws.prepared, "val")
    run_id = read_train_record(ws).run_id
    with tracking.start_run(ws, experiment=params.data.name, run_name=f"train-{spec.family}",
                            run_id=run_id) as run:  # fmt: skip
        return report_pretraining(spec, start, pretrained, params, ws, train, val, run)


@dataclass(frozen=True)
class PretrainingReport:
    gain: dict[str, float]  # with pre-training minus without, on the val split
    report: Path

    def summary(self) -> str:
        f1, accuracy = (100 * self.gain[k] for k in ("val_macro_f1", "val_accuracy"))
        return (f"pre-training bought {f1:+.2f} points of val macro F1 and {accuracy:+.2f} of"
                f" val accuracy; {self.report}")  # fmt: skip


def report_pretraining(spec, twin, pretrained, params: Params, ws: Workspace, train, val,
                       run) -> PretrainingReport:  # fmt: skip
    """What pre-training bought: the same encoder from the same start (``twin``) fine-tuned
    without it (same data, epochs and seed), both scored on the val split;
    ``reports/pretraining.json`` and ``pretraining.*`` metrics of the training run."""
    from sklearn.metrics import f1_score

    from components.core.predict import torch_predictor

    log.info(f"pre-training report: fine-tuning the same {spec.family} without pre-training")
    plain = train_classifier(twin, params.train, params.seed, train, val).net
    y, scores = np.asarray(val.y), {}
    for side, net in (("with", pretrained), ("without", plain)):
        pred = torch_predictor(net)(np.asarray(val.x)).argmax(1)
        scores[side] = {"val_accuracy": float(np.mean(pred == y)),
                        "val_macro_f1": float(f1_score(y, pred, average="macro"))}  # fmt: skip
    gain = {k: scores["with"][k] - scores["without"][k] for k in scores["with"]}
    report = {"pretrain_epochs": params.train.pretrain_epochs, **scores, "gain": gain}
    write_json(ws.report("pretraining.json"), report)
    run.log_metrics({f"pretraining.{side}.{k}": v for side, values in scores.items()
                     for k, v in values.items()} | {f"pretraining.gain.{k}": v for k, v in
                                                     gain.items()})  # fmt: skip
    run.log_artifact(ws.report("pretraining.json"))
    log.info(f"pre-training bought {100 * gain['val_macro_f1']:+.2f} points of val macro F1"
             f" ({scores['without']['val_macro_f1']:.4f} -> {scores['with']['val_macro_f1']:.4f})"
             f" and {100 * gain['val_accuracy']:+.2f} of val accuracy")  # fmt: skip
    return PretrainingReport(gain, ws.report("pretraining.json"))


def tensorboard_dir(ws: Workspace, name: str, run_id: str) -> Path:
    """Where Lightning's TensorBoard logger writes a training run (``mloop tensorboard``)."""
    return ws.tensorboard / f"{name}-{run_id[:8]}"


def pretrain_texts(net, spec, params: Params, ws: Workspace, train, val, run, logs) -> None:
    """BERT's first step, when ``train.pretrain_epochs`` asks for it: the text encoder learns
    to fill in masked tokens of the training texts and ``data.text.unlabelled``, no labels
    used; ``run`` (rank zero) tracks it as ``pretrain/*`` metrics."""
    epochs = params.train.pretrain_epochs
    if not epochs or not families.get(spec.family).masked_lm:
        return
    from components.core.kinds import tokenizer as tok
    from components.core.kinds.texts import read_unlabelled
    from components.train.objectives import Masking
    from components.train.trainer import pretrain

    meta = load_meta(ws.prepared)
    ids = np.asarray(train.x)
    extra = params.data.text.unlabelled
    if extra:
        texts = read_unlabelled(ws.root / extra, params.data.text.text)
        tokenizer = tok.load(ws.prepared / meta["text"]["tokenizer"])
        ids = np.concatenate([ids, tok.encode(tokenizer, texts, meta["text"]["max_length"])[0]])
    log.info(f"pre-training {spec.family} as a masked language model on {len(ids)} texts"
             f" ({len(ids) - len(train)} unlabelled) for {epochs} epochs")  # fmt: skip

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        if run is not None:
            run.log_metrics({f"pretrain/{k}": v for k, v in metrics.items()}, step=epoch)

    cfg = params.train.model_copy(update={"epochs": epochs, "early_stopping_patience": 0})
    logs = None if logs is None else logs.with_name(logs.name + "-pretrain")
    done = pretrain(net, cfg, params.seed, ids, np.asarray(val.x), Masking(spec.data.vocab_size),
                    on_epoch, logs)  # fmt: skip
    net.load_state_dict(done.net.state_dict())
    if run is not None:
        run.log_metrics({"pretrain_seconds": done.seconds, "pretrain_texts": float(len(ids))})


def plot_learning_curves(history: list[dict[str, float]], path: Path) -> Path:
    """Loss and accuracy per epoch, train against validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, metric in zip(axes, ("loss", "acc"), strict=True):
        for stage in ("train", "val"):
            values = [h.get(f"{stage}/{metric}", float("nan")) for h in history]
            ax.plot(epochs, values, marker="o", markersize=3, label=stage)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def read_train_record(ws: Workspace) -> TrainResult:
    fields = read_json(ws.train_record, "train")
    fields["model_file"] = Path(fields["model_file"])
    return TrainResult(**fields)
