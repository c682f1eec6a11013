"""The training loop: fit a network with PyTorch Lightning.

``fit`` needs only torch, lightning and numpy, so it runs on a bare GPU machine
(``benchmarks/gpu_check.sh``); the pruning fine-tuner, the distillation students
and the sweep trials train through it too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.core.splits import Split, pixel_scale

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
class Teacher:
    """What a student learns from: the teacher's logits for every training sample,
    computed once (``components.distillation.teacher_logits``), and the loss mix."""

    logits: np.ndarray  # (n_train, classes), float32, in the order of the training split
    temperature: float
    alpha: float  # share of the loss on the softened teacher outputs


@dataclass(frozen=True)
class Masking:
    """Masked-language-model pre-training (BERT's): which tokens, and what masks them."""

    vocab_size: int
    mask_id: int = 4  # components.prepare.tokenizer: [PAD] [UNK] [CLS] [SEP] [MASK] are 0..4
    first_token: int = 5  # ids below are special: never masked
    rate: float = 0.15


def fit(
    net,
    cfg: TrainConfig,
    seed: int,
    train: Split,
    val: Split,
    on_epoch: EpochHook | None = None,
    checkpoint_dir: Path | None = None,
    resume_from: Path | None = None,
    teacher: Teacher | None = None,
    masking: Masking | None = None,
    log_dir: Path | None = None,
) -> FitResult:
    """Train ``net`` on ``train``, validating on ``val`` after every epoch.

    With ``checkpoint_dir`` a checkpoint (``last.ckpt``) is written every epoch;
    ``resume_from`` continues from one, to the same number of epochs. With a
    ``teacher`` the net is distilled: its training batches carry the teacher's
    cached logits and the loss mixes them with the labels. With ``masking`` a text
    encoder is pre-trained instead, as a masked language model (``pretrain``). With
    ``log_dir`` Lightning's TensorBoard logger writes there too (``mloop tensorboard``).
    """
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from components.core.logs import quiet_libraries
    from components.train import lightning_module as lit

    quiet_libraries()
    L.seed_everything(seed, workers=True, verbose=False)
    history: list[dict[str, float]] = []

    def record(epoch: int, metrics: dict[str, float]) -> None:
        history.append({"epoch": epoch, **metrics})
        if on_epoch is not None:
            on_epoch(epoch, metrics)

    callbacks: list = [lit.EpochReporter(cfg.epochs, record)]
    soft = None if teacher is None else teacher.logits
    if soft is not None and len(soft) != len(train.y):
        raise ValueError(f"teacher logits for {len(soft)} samples, training split has"
                         f" {len(train.y)}")  # fmt: skip
    if lit.distributed(cfg) or not lit.fits_on_device(train.x, cfg):
        train_data = lit.loader(train.x, train.y, cfg.batch_size, True, seed, soft)
        val_data = lit.loader(val.x, val.y, 512, shuffle=False, seed=seed)
    else:  # the whole split on the device: no loader overhead at all
        train_data = lit.TensorBatches(train.x, train.y, cfg.batch_size, True, seed, soft)
        val_data = lit.TensorBatches(val.x, val.y, 512, shuffle=False, seed=seed)
        callbacks.append(lit.FeedBatches(train_data, val_data))
    if checkpoint_dir is not None:
        callbacks.append(
            ModelCheckpoint(  # overwritten each epoch: the latest state, to resume from
                dirpath=checkpoint_dir,
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
        precision=lit.resolve_precision(cfg),
        gradient_clip_val=cfg.gradient_clip or None,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        deterministic=cfg.deterministic,
        logger=tensorboard_logger(log_dir),
        enable_checkpointing=checkpoint_dir is not None,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_train_batches=cfg.limit_batches or 1.0,
        limit_val_batches=cfg.limit_batches or 1.0,
        callbacks=callbacks,
    )
    if masking is not None:
        module = lit.MaskedLM(net, cfg, masking)
    elif teacher is None:
        counts = np.bincount(train.y) if cfg.class_weights == "balanced" else None
        module = lit.Classifier(net, cfg, counts)
    else:
        module = lit.Distiller(net, cfg, teacher.temperature, teacher.alpha)
    start = time.perf_counter()
    trainer.fit(
        module,
        train_dataloaders=train_data,
        val_dataloaders=val_data,
        ckpt_path=str(resume_from) if resume_from else None,
    )
    seconds = time.perf_counter() - start
    device = str(trainer.strategy.root_device)
    if device.startswith("cuda"):
        device = f"{device} ({torch.cuda.get_device_name(trainer.strategy.root_device)})"
    net = module.net.to(memory_format=torch.contiguous_format).cpu().eval()
    return FitResult(net, history, seconds, device, epochs=trainer.current_epoch)


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
    net,
    cfg: TrainConfig,
    seed: int,
    texts: np.ndarray,
    val_texts: np.ndarray,
    masking: Masking,
    on_epoch: EpochHook | None = None,
    log_dir: Path | None = None,
) -> FitResult:
    """BERT's first step: ``net`` (a text encoder) learns to fill in masked tokens of
    ``texts`` (token ids: the training texts and any unlabelled ones), no labels needed;
    fine-tuning on the labels follows with ``fit``."""
    unlabelled = np.zeros(len(texts), np.int64)
    return fit(net, cfg, seed, Split(texts, unlabelled), Split(val_texts, np.zeros(len(val_texts),
               np.int64)), on_epoch=on_epoch, masking=masking, log_dir=log_dir)  # fmt: skip


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
        num_classes=len(meta["classes"]),
        pixel_max=float(pixel_scale(params, meta) or 1.0),
        feature_mean=mean,
        feature_std=std,
        feature_fill=fill,
        vocab_size=int((meta.get("text") or {}).get("vocab_size", 0)),
    )
    return families.NetSpec(name, data, cfg.net(name), cfg.dropout)


def global_rank() -> int:
    """This process's rank under Lightning's launchers (0 when not distributed)."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)
