"""The training loop: ``fit(objective, data, Fitting)`` with PyTorch Lightning.

The objective (``objectives.py``: classify, distill, masked LM) holds the network and its
optimizer; the data module (``data.py``) holds the batches; ``Fitting`` says how the run
goes. ``fit`` needs only torch, lightning and numpy, so it runs on a bare GPU machine
(``benchmarks/gpu_check.sh``); the pruning fine-tuner, the distillation students and the
sweep trials train through it too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.core.splits import Split, pixel_scale
from components.core.tasks import task_of

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    from components.core.config import Params, TrainConfig

EpochHook = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class FitResult:
    net: object  # torch.nn.Module, on the CPU, in eval mode
    history: list[dict[str, float]]
    seconds: float
    device: str
    epochs: int  # epochs completed in all, resumed ones included


@dataclass(frozen=True)
class Fitting:
    """How one fit runs: the trainer's settings in ``cfg`` (epochs, devices, strategy,
    precision, clipping, accumulation, early stopping, batch caps), the seed, and where the
    run reports and writes (each epoch's metrics, checkpoints to resume from, TensorBoard)."""

    cfg: TrainConfig
    seed: int
    on_epoch: EpochHook | None = None
    checkpoint_dir: Path | None = None  # last.ckpt, written every epoch
    resume_from: Path | None = None  # a checkpoint to continue, to the same number of epochs
    log_dir: Path | None = None  # Lightning's TensorBoard logger writes here (mloop tensorboard)


def fit(module, data, run: Fitting) -> FitResult:
    """Train ``module`` (an objective: ``components.train.objectives``) on ``data`` (a
    LightningDataModule: ``components.train.data.SplitData``), validating after every epoch."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from components.core.logs import quiet_libraries
    from components.train.callbacks import EpochReporter

    cfg = run.cfg
    quiet_libraries()
    L.seed_everything(run.seed, workers=True, verbose=False)
    history: list[dict[str, float]] = []

    def record(epoch: int, metrics: dict[str, float]) -> None:
        history.append({"epoch": epoch, **metrics})
        if run.on_epoch is not None:
            run.on_epoch(epoch, metrics)

    callbacks: list = [EpochReporter(cfg.epochs, record)]
    if run.checkpoint_dir is not None:
        callbacks.append(
            ModelCheckpoint(  # overwritten each epoch: the latest state, to resume from
                dirpath=run.checkpoint_dir,
                filename="last",
                save_top_k=1,
                every_n_epochs=1,
                enable_version_counter=False,
            )  # fmt: skip
        )
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStopping("val/loss", patience=cfg.early_stopping_patience))

    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        num_nodes=cfg.num_nodes,
        precision=resolve_precision(cfg),
        gradient_clip_val=cfg.gradient_clip or None,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        deterministic=cfg.deterministic,
        logger=tensorboard_logger(run.log_dir),
        enable_checkpointing=run.checkpoint_dir is not None,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_train_batches=cfg.limit_batches or 1.0,
        limit_val_batches=cfg.limit_batches or 1.0,
        callbacks=callbacks,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=data,
                ckpt_path=str(run.resume_from) if run.resume_from else None)  # fmt: skip
    seconds = time.perf_counter() - start
    device = str(trainer.strategy.root_device)
    if device.startswith("cuda"):
        device = f"{device} ({torch.cuda.get_device_name(trainer.strategy.root_device)})"
    net = module.net.to(memory_format=torch.contiguous_format).cpu().eval()
    return FitResult(net, history, seconds, device, epochs=trainer.current_epoch)


def train_classifier(net, cfg: TrainConfig, seed: int, train: Split, val: Split,
                     objective: str = "classify", **fitting) -> FitResult:  # fmt: skip
    """The usual fit: ``net`` learns its task's ``objective`` (``objectives.classify``:
    ``cfg``'s optimizer and class weights; ``regress``) on ``train``, validated on ``val``;
    ``fitting``: ``Fitting``'s fields."""
    from components.train.data import SplitData
    from components.train.objectives import OBJECTIVES

    data = SplitData(train, val, cfg.batch_size, seed)
    return fit(OBJECTIVES[objective](net, cfg, train.y), data, Fitting(cfg, seed, **fitting))


def resolve_precision(cfg: TrainConfig) -> str:
    """bf16-mixed on a GPU that supports it, 32-bit everywhere else, unless params say."""
    import torch

    if cfg.precision != "auto":
        return cfg.precision
    wants_gpu = cfg.accelerator in ("auto", "gpu", "cuda")
    if wants_gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def tensorboard_logger(log_dir: Path | None):
    """Lightning's TensorBoard logger writing to ``log_dir``; False without one, or where
    TensorBoard is not installed (a bare GPU machine: training goes on, said once)."""
    if log_dir is None:
        return False
    from lightning.pytorch.loggers import TensorBoardLogger

    try:
        return TensorBoardLogger(save_dir=str(log_dir.parent), name="", version=log_dir.name,
                                 default_hp_metric=False)  # fmt: skip
    except ModuleNotFoundError as err:
        import logging

        logging.getLogger(__name__).warning(f"no TensorBoard logs: {err}")
        return False


def pretrain(
    net, cfg: TrainConfig, seed: int, texts: np.ndarray, val_texts: np.ndarray, masking,
    on_epoch: EpochHook | None = None, log_dir: Path | None = None,
) -> FitResult:  # fmt: skip
    """BERT's first step: ``net`` (a text encoder) learns to fill in masked tokens of
    ``texts`` (token ids: the training texts and any unlabelled ones), no labels needed;
    fine-tuning on the labels follows with ``train_classifier``."""
    from components.train.data import SplitData
    from components.train.objectives import MaskedLM, Optimizer

    unlabelled = [Split(t, np.zeros(len(t), np.int64)) for t in (texts, val_texts)]
    data = SplitData(*unlabelled, cfg.batch_size, seed)
    return fit(MaskedLM(net, Optimizer.of(cfg), masking), data,
               Fitting(cfg, seed, on_epoch, log_dir=log_dir))  # fmt: skip


def one_device(cfg: TrainConfig, **update) -> TrainConfig:
    """``cfg`` for a short extra training in this process: one device, no compile or early stop."""
    fixed = {"compile": False, "early_stopping_patience": 0, "devices": 1, "strategy": "auto",
             "num_nodes": 1}  # fmt: skip
    return cfg.model_copy(update={**fixed, **update})


def net_spec(params: Params, meta: dict, train: Split):
    """The network for this data: the family ``train.model`` names (``auto``: the data kind's
    own), sized by its section ``train.<family>``, fed the data's shape and statistics."""
    from components.core import families
    from components.core.kinds import kind as data_kind

    cfg, data_kind_ = params.train, data_kind(meta["kind"])
    name = cfg.model if cfg.model != "auto" else data_kind_.family
    family = families.get(name)
    if data_kind_.name not in family.reads:
        raise ValueError(f"train.model: {name!r} reads {' or '.join(family.reads)} data, not"
                         f" {meta['kind']}; use {data_kind_.family!r} or 'auto'")  # fmt: skip
    fill = mean = std = ()
    if meta.get("schema"):  # a table's encoding: the net imputes and standardises itself
        fill = tuple(float(v) for v in meta["schema"].get("feature_fill") or [])
        x = train.x if not fill else np.where(np.isnan(train.x), np.float32(fill), train.x)
        mean = tuple(float(v) for v in np.nanmean(x, axis=0))
        std = tuple(float(v) for v in np.nanstd(x, axis=0))
    data = families.DataSpec(
        kind=meta["kind"],
        input_shape=tuple(meta["input_shape"]),
        num_classes=task_of(meta).outputs(meta["classes"]),
        pixel_max=float(pixel_scale(params, meta) or 1.0),
        feature_mean=mean,
        feature_std=std,
        feature_fill=fill,
        vocab_size=int((meta.get("text") or {}).get("vocab_size", 0)),
        **target_spec(meta),
    )
    return families.NetSpec(name, data, cfg.net(name), cfg.dropout)


def target_spec(meta: dict) -> dict:
    """A regression's target scale as a net learns it (``meta["target"]``, fitted by the
    prepare stage on the training split); nothing for a classification."""
    target = meta.get("target")
    if not target:
        return {}
    return {"target_shift": float(target["shift"]), "target_scale": float(target["scale"]),
            "target_log1p": "log1p" in target["transforms"]}  # fmt: skip


def global_rank() -> int:
    """This process's rank under Lightning's launchers (0 when not distributed)."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)
