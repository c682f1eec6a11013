"""The Lightning side of training: the module, the in-memory data path, the callbacks.

Imported only when training runs (it imports Lightning); needs nothing beyond
torch, lightning and numpy, so it runs on a bare GPU machine.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from components.core.splits import RowFile

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    from components.core.config import TrainConfig

log = logging.getLogger(__name__)


class Classifier(L.LightningModule):
    """Cross-entropy classification around any ``net``; one step shared by train and val.

    With ``class_counts`` (the training labels' counts) each class's loss is weighted
    ``n / (classes x count)``, scikit-learn's "balanced": a rare class counts as much
    as a common one.
    """

    def __init__(
        self, net: torch.nn.Module, cfg: TrainConfig, class_counts: np.ndarray | None = None
    ) -> None:
        super().__init__()
        self.net = net
        self.cfg = cfg
        self.class_counts = class_counts
        self._weight: torch.Tensor | None = None
        self.channels_last = False
        # A compiled view of the same network; kept out of the module tree so that
        # checkpoints and state dicts hold each weight once, under its plain name.
        self._forward = torch.compile(net) if cfg.compile else net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._forward(x)

    def _common_step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, weight=self._class_weight(logits))
        acc = (logits.argmax(dim=1) == y).float().mean()
        return self._logged(stage, loss, acc)

    def _logged(self, stage: str, loss: torch.Tensor, acc: torch.Tensor) -> torch.Tensor:
        """Log a step's loss and accuracy as epoch means (across processes too); the loss."""
        sync = self.trainer.world_size > 1
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, sync_dist=sync)
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, sync_dist=sync)
        return loss

    def _class_weight(self, logits: torch.Tensor) -> torch.Tensor | None:
        if self.class_counts is None:
            return None
        if self._weight is None or self._weight.device != logits.device:
            counts = np.zeros(logits.shape[1])
            counts[: len(self.class_counts)] = self.class_counts
            seen = counts > 0  # a class the training split lacks keeps weight 1
            weight = np.ones_like(counts)
            weight[seen] = counts.sum() / (seen.sum() * counts[seen])
            self._weight = torch.as_tensor(weight, dtype=logits.dtype, device=logits.device)
        return self._weight.to(logits.dtype)

    def training_step(self, batch, batch_idx):
        return self._common_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._common_step(batch, "val")

    def on_fit_start(self) -> None:
        conv = any(isinstance(m, torch.nn.Conv2d) for m in self.net.modules())
        if self.cfg.channels_last and conv and self.device.type == "cuda":
            self.net.to(memory_format=torch.channels_last)
            self.channels_last = True

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        # Under FSDP each process holds a shard of the gradients: only the wrapped model can
        # take their global norm (Lightning's own clipping refuses FSDP with "norm").
        if gradient_clip_val and hasattr(self.trainer.model, "clip_grad_norm_"):
            self.trainer.model.clip_grad_norm_(gradient_clip_val)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self):
        cfg = self.cfg
        opt = torch.optim.AdamW(
            self.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        steps = self.trainer.estimated_stepping_batches
        if cfg.schedule == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=cfg.learning_rate, total_steps=steps
            )
        elif cfg.schedule == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        else:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def mask_tokens(
    ids: torch.Tensor,
    rate: float,
    mask_id: int,
    first_token: int,
    vocab_size: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: ``rate`` of the ordinary tokens (ids from ``first_token``; never
    padding or the special tokens) are to be predicted; of those, 80% become [MASK], 10%
    a random ordinary token and 10% stay. Returns the inputs and the targets (-100 where
    nothing is predicted)."""
    draw = lambda: torch.rand(ids.shape, generator=generator).to(ids.device)  # noqa: E731
    chosen = (draw() < rate) & (ids >= first_token)
    targets = torch.where(chosen, ids, torch.full_like(ids, -100))
    roll = draw()
    inputs = torch.where(chosen & (roll < 0.8), torch.full_like(ids, mask_id), ids)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    random = torch.randint(first_token, vocab_size, ids.shape, generator=generator).to(ids.device)
    return torch.where(swap, random, inputs), targets


class MaskedLM(Classifier):
    """Masked-language-model pre-training of a text encoder (its ``token_logits`` head):
    the loss is cross-entropy on the masked tokens only, accuracy is on those tokens.
    Validation masks the same tokens every epoch (a generator seeded once per batch)."""

    def __init__(self, net: torch.nn.Module, cfg: TrainConfig, masking) -> None:
        super().__init__(net, cfg)
        self.masking = masking

    def _common_step(self, batch, stage: str) -> torch.Tensor:
        ids = batch[0].long()
        m = self.masking
        generator = None
        if stage == "val":
            generator = torch.Generator().manual_seed(int(ids[:, :8].sum()) % (2**31))
        inputs, targets = mask_tokens(ids, m.rate, m.mask_id, m.first_token, m.vocab_size,
                                      generator)  # fmt: skip
        logits = self.net.token_logits(inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=-100)  # fmt: skip
        picked = targets != -100
        acc = (logits.argmax(-1)[picked] == targets[picked]).float().mean()
        return self._logged(stage, loss, acc)


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Hinton et al.'s mix: ``alpha`` x T^2 x KL(teacher_T || student_T) + (1 - alpha) x CE.

    Both logits are softened by ``temperature``; T^2 keeps the soft term's gradients
    on the scale of the hard one. Returns (loss, soft term, hard term).
    """
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1),
        reduction="batchmean", log_target=True,
    ) * (t * t)  # fmt: skip
    hard = F.cross_entropy(student, labels)
    return alpha * soft + (1 - alpha) * hard, soft, hard


class Distiller(Classifier):
    """A student learning from cached teacher logits: training batches are (x, y, logits).

    Validation stays plain cross-entropy and accuracy on the labels, like ``Classifier``.
    """

    def __init__(self, net: torch.nn.Module, cfg: TrainConfig, temperature: float, alpha: float):
        super().__init__(net, cfg)
        self.temperature, self.alpha = temperature, alpha

    def distill_step(self, batch) -> tuple[torch.Tensor, ...]:
        x, y, teacher = batch
        logits = self(x)
        return logits, *distillation_loss(logits, teacher, y, self.temperature, self.alpha)

    def training_step(self, batch, batch_idx):
        logits, loss, soft, hard = self.distill_step(batch)
        sync = self.trainer.world_size > 1
        acc = (logits.argmax(dim=1) == batch[1]).float().mean()
        for name, value in (("loss", loss), ("soft_loss", soft), ("hard_loss", hard), ("acc", acc)):
            self.log(f"train/{name}", value, on_step=False, on_epoch=True, sync_dist=sync)
        return loss


class TensorBatches:
    """Batches drawn from tensors that live on the training device: no loader, no copies.

    The order of epoch ``e`` depends only on ``seed`` and ``e``, so a run resumed
    from a checkpoint sees the same batches as one that never stopped. ``extra``
    (a teacher's logits, one row per sample) rides along as a third element.
    """

    def __init__(
        self, x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int,
        extra: np.ndarray | None = None,
    ):  # fmt: skip
        # A split file mapped into memory is read a batch at a time with plain reads
        # (RowFile.take), not through the map: that kept what it touched resident.
        self.rows = RowFile(x.filename) if isinstance(x, np.memmap) else None
        first = None if self.rows is not None else x
        self.tensors = [torch.from_numpy(a) if a is not None else None for a in (first, y, extra)]
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch = 0
        # Token ids (padding 0 after each text): batches of texts of like length, each cut
        # to its longest text, so a batch of short messages pays for no padding.
        self.lengths = None
        if first is not None and np.issubdtype(first.dtype, np.integer) and first.ndim == 2:
            self.lengths = torch.from_numpy((first != 0).sum(axis=1).astype(np.int64))

    def to(self, device: torch.device) -> None:
        self.tensors = [t.to(device) if t is not None else None for t in self.tensors]

    def __len__(self) -> int:
        return -(-len(self.tensors[1]) // self.batch_size)

    def _batches(self) -> list[torch.Tensor]:
        n = len(self.tensors[1])
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        if self.lengths is None:
            return list(order.split(self.batch_size))
        # Pools of BUCKET_POOL batches, each sorted by length and cut into batches; the
        # batches then go in a random order (validation: sorted, in order).
        pool = self.batch_size * self.BUCKET_POOL
        batches = []
        for chunk in order.split(pool):
            ranked = chunk[torch.argsort(self.lengths[chunk], stable=True)]
            batches += list(ranked.split(self.batch_size))
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=g)]
        return batches

    BUCKET_POOL = 50

    def __iter__(self):
        device = self.tensors[1].device
        for idx in self._batches():
            idx = idx.to(device)
            x = self.tensors[0][idx] if self.rows is None else (
                torch.from_numpy(self.rows.take(idx.cpu().numpy())).to(device))  # fmt: skip
            if self.lengths is not None:
                x = x[:, : max(1, int(self.lengths[idx.cpu()].max()))]
            yield (x, *(t[idx] for t in self.tensors[1:] if t is not None))


class FeedBatches(L.Callback):
    """Moves in-memory batches to the device at the start and tells them the epoch."""

    def __init__(self, *batches: TensorBatches) -> None:
        self.batches = batches

    def on_fit_start(self, trainer, pl_module):
        for b in self.batches:
            b.to(pl_module.device)

    def on_train_epoch_start(self, trainer, pl_module):
        for b in self.batches:
            b.epoch = trainer.current_epoch


class EpochReporter(L.Callback):
    """Prints one short line per epoch (rank zero only) and hands the metrics on."""

    EVERY_S = 10.0  # an epoch longer than this shows its batches as it goes

    def __init__(self, total_epochs: int, on_epoch: Callable[[int, dict], None] | None) -> None:
        self.total_epochs, self.on_epoch = total_epochs, on_epoch
        self._start = self._shown = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = self._shown = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        if now - self._shown < self.EVERY_S or not trainer.is_global_zero:
            return
        self._shown = now
        total = trainer.num_training_batches
        done = batch_idx + 1
        log.info(f"  epoch {trainer.current_epoch + 1:>3}/{self.total_epochs}  batch {done:,}"
                 f"/{total:,} ({100 * done / total:.0f}%, {done / (now - self._start):.1f}"
                 " batches/s)")  # fmt: skip

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if "/" in k}
        epoch = trainer.current_epoch + 1
        shown = "  ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
        took = time.perf_counter() - self._start
        log.info(f"  epoch {epoch:>3}/{self.total_epochs}  {shown}  ({took:.1f}s)")
        if self.on_epoch is not None:
            self.on_epoch(epoch, metrics)


def resolve_precision(cfg: TrainConfig) -> str:
    """bf16-mixed on a GPU that supports it, 32-bit everywhere else, unless params say."""
    if cfg.precision != "auto":
        return cfg.precision
    wants_gpu = cfg.accelerator in ("auto", "gpu", "cuda")
    if wants_gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def distributed(cfg: TrainConfig) -> bool:
    return (
        cfg.strategy != "auto"
        or cfg.num_nodes > 1
        or (isinstance(cfg.devices, int) and cfg.devices > 1)
    )


def fits_on_device(x: np.ndarray, cfg: TrainConfig) -> bool:
    """The whole split may live on the device: on the CPU always, on a GPU within 1/4 of free."""
    if cfg.accelerator == "cpu" or not torch.cuda.is_available():
        return True
    free, _ = torch.cuda.mem_get_info()
    return x.nbytes < free / 4


def loader(
    x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int,
    extra: np.ndarray | None = None,
):  # fmt: skip
    """A DataLoader for data that is split across processes or does not fit on the device;
    a memory-mapped split is read a row at a time (``RowFile.take``), in the loader's workers."""
    from torch.utils.data import DataLoader, TensorDataset

    cuda = torch.cuda.is_available()
    workers = min(4, os.cpu_count() or 1) if cuda else 0
    if isinstance(x, np.memmap):
        data = MappedRows(x, y, extra)
    else:
        data = TensorDataset(*(torch.from_numpy(a) for a in (x, y, extra) if a is not None))
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=cuda,
        num_workers=workers,
        persistent_workers=workers > 0,
    )


class MappedRows(torch.utils.data.Dataset):
    """A memory-mapped split's rows for a DataLoader, each read with ``RowFile.take``."""

    def __init__(self, x: np.memmap, y: np.ndarray, extra: np.ndarray | None = None) -> None:
        self.rows, self.y, self.extra = RowFile(x.filename), y, extra

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        x = torch.from_numpy(self.rows.take([i])[0].copy())
        rest = [self.y[i]] + ([] if self.extra is None else [torch.from_numpy(self.extra[i])])
        return (x, torch.as_tensor(rest[0]), *rest[1:])
