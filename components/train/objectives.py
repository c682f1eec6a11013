"""What a network is trained to do, one LightningModule each: ``Classify``, ``Distill``
(a student imitating its teacher's logits) and ``MaskedLM`` (BERT's pre-training).

Each wraps any network (a family builds it) and an injected ``Optimizer``; one
``_common_step(batch, stage)`` serves training and validation, metrics logged as
``{stage}/loss`` and ``{stage}/acc``. Imported when training runs (Lightning); needs only
torch, lightning and numpy, so it runs on a bare GPU machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Optimizer:
    """AdamW and its learning-rate schedule, per step: what an objective is given."""

    learning_rate: float
    weight_decay: float = 0.0
    schedule: str = "onecycle"  # onecycle | cosine | linear | constant

    @classmethod
    def of(cls, cfg) -> Optimizer:
        """From a train section (``learning_rate``, ``weight_decay``, ``schedule``)."""
        return cls(cfg.learning_rate, cfg.weight_decay, cfg.schedule)

    def configure(self, parameters, total_steps: int):
        """What ``LightningModule.configure_optimizers`` returns."""
        trains = [p for p in parameters if p.requires_grad]  # frozen weights: not stepped
        opt = torch.optim.AdamW(trains, lr=self.learning_rate, weight_decay=self.weight_decay)
        if self.schedule == "linear":  # warm-up over a tenth of the steps, then linear decay
            warm = max(1, total_steps // 10)

            def factor(step: int) -> float:
                if step < warm:
                    return (step + 1) / warm
                return max(0.0, (total_steps - step) / max(1, total_steps - warm))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        elif self.schedule == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.learning_rate,
                                                        total_steps=total_steps)  # fmt: skip
        elif self.schedule == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
        else:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class Objective(L.LightningModule):
    """The network, its optimizer, and how it runs on the device (compiled, channels-last
    convolutions on a GPU); subclasses say what a step computes (``_common_step``)."""

    def __init__(self, net: torch.nn.Module, optimizer: Optimizer, compile: bool = False,
                 channels_last: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.net = net
        self.optimizer = optimizer
        self.wants_channels_last = channels_last
        self.channels_last = False
        # A compiled view of the same network; kept out of the module tree so that
        # checkpoints and state dicts hold each weight once, under its plain name.
        self._forward = torch.compile(net) if compile else net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._forward(x)

    def _common_step(self, batch, stage: str) -> torch.Tensor:
        raise NotImplementedError

    def _logged(self, stage: str, loss: torch.Tensor, acc: torch.Tensor) -> torch.Tensor:
        """Log a step's loss and accuracy as epoch means (across processes too); the loss."""
        sync = self.trainer.world_size > 1
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, sync_dist=sync)
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, sync_dist=sync)
        return loss

    def training_step(self, batch, batch_idx):
        return self._common_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._common_step(batch, "val")

    def on_fit_start(self) -> None:
        conv = any(isinstance(m, torch.nn.Conv2d) for m in self.net.modules())
        if self.wants_channels_last and conv and self.device.type == "cuda":
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
        return self.optimizer.configure(self.parameters(), self.trainer.estimated_stepping_batches)


class Classify(Objective):
    """Cross-entropy on the labels. With ``class_counts`` (the training labels' counts) each
    class's loss is weighted ``n / (classes x count)``, scikit-learn's "balanced": a rare
    class counts as much as a common one."""

    def __init__(self, net, optimizer: Optimizer, class_counts: np.ndarray | None = None,
                 **device) -> None:  # fmt: skip
        super().__init__(net, optimizer, **device)
        self.class_counts = class_counts
        self._weight: torch.Tensor | None = None

    def _common_step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = F.cross_entropy(logits, y, weight=self._class_weight(logits))
        return self._logged(stage, loss, (logits.argmax(dim=1) == y).float().mean())

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


class AsIs(Classify):
    """A LightningModule of your own (``train.model: python``) trained as it is: its own
    ``training_step`` (and what it logs) and its ``configure_optimizers`` where it has one;
    the validation the loop decides on stays the loop's (cross-entropy and accuracy of its
    logits), so its runs compare with every other family's."""

    def training_step(self, batch, batch_idx):
        self.net._current_fx_name = self._current_fx_name  # its self.log is ours
        out = self.net.training_step(batch, batch_idx)
        loss = out["loss"] if isinstance(out, dict) else out
        self.log("train/loss", loss.detach(), on_step=False, on_epoch=True)
        return out

    def configure_optimizers(self):
        if overrides(self.net, "configure_optimizers"):
            return self.net.configure_optimizers()
        return super().configure_optimizers()


def overrides(net, method: str) -> bool:
    """Whether ``net`` is a LightningModule with a ``method`` of its own."""
    own = getattr(type(net), method, None)
    return isinstance(net, L.LightningModule) and own is not getattr(L.LightningModule, method)


def classify(net, cfg, labels: np.ndarray | None = None) -> Classify:
    """``Classify`` as a train section says: its optimizer, ``class_weights`` (counted on
    ``labels``, the training split's), ``compile`` and ``channels_last``; ``AsIs`` for a
    LightningModule with a training step of its own."""
    counts = np.bincount(labels) if cfg.class_weights == "balanced" and labels is not None else None
    made = AsIs if overrides(net, "training_step") else Classify
    return made(net, Optimizer.of(cfg), counts, compile=cfg.compile,
                channels_last=cfg.channels_last)  # fmt: skip


class Regress(Objective):
    """MSE (or Huber, delta 1) between the net's value and the label, both on the declared
    target scale (the net's ``target.scaled``: log1p and standardised, as ``data.tabular.
    target_transform`` says); logged as ``{stage}/loss`` and ``{stage}/rmse`` (in the
    label's units)."""

    def __init__(self, net, optimizer: Optimizer, loss: str = "mse", **device) -> None:
        super().__init__(net, optimizer, **device)
        self.loss = loss
        scale = getattr(net, "target", None)
        self.scaled = scale.scaled if scale is not None else (lambda y: y)

    def _common_step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch[0], batch[1].float()
        value = self(x).reshape(len(y))
        given, wanted = self.scaled(value), self.scaled(y)
        loss = F.huber_loss(given, wanted) if self.loss == "huber" else F.mse_loss(given, wanted)
        sync = self.trainer.world_size > 1
        rmse = torch.sqrt(F.mse_loss(value.detach(), y))
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, sync_dist=sync)
        self.log(f"{stage}/rmse", rmse, on_step=False, on_epoch=True, sync_dist=sync)
        return loss


def regress(net, cfg, labels: np.ndarray | None = None) -> Regress:
    """``Regress`` as a train section says: its optimizer, ``loss`` and device options."""
    return Regress(net, Optimizer.of(cfg), cfg.loss, compile=cfg.compile,
                   channels_last=cfg.channels_last)  # fmt: skip


# The objective each task trains with (``Task.objective``), by name
OBJECTIVES = {"classify": classify, "regress": regress}


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


class Distill(Classify):
    """A student learning from cached teacher logits: training batches are (x, y, logits).
    Validation stays plain cross-entropy and accuracy on the labels, like ``Classify``."""

    def __init__(self, net, optimizer: Optimizer, temperature: float, alpha: float,
                 **device) -> None:  # fmt: skip
        super().__init__(net, optimizer, **device)
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


@dataclass(frozen=True)
class Masking:
    """Masked-language-model pre-training (BERT's): which tokens, and what masks them."""

    vocab_size: int
    mask_id: int = 4  # components.core.kinds.tokenizer: [PAD] [UNK] [CLS] [SEP] [MASK] are 0..4
    first_token: int = 5  # ids below are special: never masked
    rate: float = 0.15


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


class MaskedLM(Objective):
    """Masked-language-model pre-training of a text encoder (its ``token_logits`` head): the
    loss is cross-entropy on the masked tokens only, accuracy is on those tokens.
    Validation masks the same tokens every epoch (a generator seeded once per batch)."""

    def __init__(self, net, optimizer: Optimizer, masking: Masking, **device) -> None:
        super().__init__(net, optimizer, **device)
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
