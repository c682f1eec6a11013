"""Lightning callbacks of a training run: one short line per epoch, metrics handed on.

Imported when training runs (Lightning); needs only torch and lightning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import lightning as L

log = logging.getLogger(__name__)


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
