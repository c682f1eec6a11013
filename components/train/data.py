"""The batches a training run reads: ``SplitData``, a LightningDataModule over two splits.

On one device, when the training split fits there, both splits live on the device whole and
are batched in place (``TensorBatches``: no loader, no copies); otherwise, or when the run
spans several processes, a DataLoader feeds them (pinned memory and workers on a GPU; a
memory-mapped split read a row at a time). Needs only torch, lightning and numpy.
"""

from __future__ import annotations

import os

import lightning as L
import numpy as np
import torch

from components.core.splits import RowFile, Split


class SplitData(L.LightningDataModule):
    """The training and validation splits of one run. ``extra`` (a teacher's logits, one row
    per training sample) rides along with each training batch as its third element."""

    VAL_BATCH = 512

    def __init__(self, train: Split, val: Split, batch_size: int, seed: int,
                 extra: np.ndarray | None = None) -> None:  # fmt: skip
        super().__init__()
        if extra is not None and len(extra) != len(train.y):
            raise ValueError(f"teacher logits for {len(extra)} samples, training split has"
                             f" {len(train.y)}")  # fmt: skip
        self.train, self.val, self.extra = train, val, extra
        self.batch_size, self.seed = batch_size, seed
        self._loaders: tuple | None = None

    def setup(self, stage: str) -> None:
        if self._loaders is not None:
            return
        device = self.trainer.strategy.root_device
        t, v = self.train, self.val
        if self.trainer.world_size > 1 or not fits_on_device(t.x, device):
            self._loaders = (
                loader(t.x, t.y, self.batch_size, True, self.seed, self.extra),
                loader(v.x, v.y, self.VAL_BATCH, shuffle=False, seed=self.seed),
            )
            return
        batches = (
            TensorBatches(t.x, t.y, self.batch_size, True, self.seed, self.extra),
            TensorBatches(v.x, v.y, self.VAL_BATCH, shuffle=False, seed=self.seed),
        )
        for b in batches:
            b.to(device)
            b.trainer = self.trainer  # its epoch orders the batches
        self._loaders = batches

    def train_dataloader(self):
        return self._loaders[0]

    def val_dataloader(self):
        return self._loaders[1]


def fits_on_device(x: np.ndarray, device: torch.device) -> bool:
    """The whole split may live on the device: on the CPU always, on a GPU within 1/4 of free."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return x.nbytes < free / 4


class TensorBatches:
    """Batches drawn from tensors that live on the training device: no loader, no copies.

    The order of epoch ``e`` depends only on ``seed`` and ``e`` (the trainer's epoch when
    one is attached, else ``epoch``), so a run resumed from a checkpoint sees the same
    batches as one that never stopped. ``extra`` (a teacher's logits, one row per sample)
    rides along as a third element.
    """

    BUCKET_POOL = 50

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
        self.trainer = None
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
        epoch = self.trainer.current_epoch if self.trainer is not None else self.epoch
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
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

    def __iter__(self):
        device = self.tensors[1].device
        for idx in self._batches():
            idx = idx.to(device)
            x = self.tensors[0][idx] if self.rows is None else (
                torch.from_numpy(self.rows.take(idx.cpu().numpy())).to(device))  # fmt: skip
            if self.lengths is not None:
                x = x[:, : max(1, int(self.lengths[idx.cpu()].max()))]
            yield (x, *(t[idx] for t in self.tensors[1:] if t is not None))


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
