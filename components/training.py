"""The ``train`` stage: fit a network with PyTorch Lightning.

``fit`` is the training loop itself and needs only torch, lightning and numpy,
so it runs on a bare GPU machine. ``train_stage`` wraps it with the workspace's
files and MLflow tracking.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.config import Params, TrainConfig
from components.data import Split, load_meta, load_split
from components.paths import Workspace
from components.records import read_json, write_json

WEIGHTS_FOLDER = "weights"
EpochHook = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class FitResult:
    net: object  # torch.nn.Module, on the CPU, in eval mode
    history: list[dict[str, float]]
    seconds: float
    device: str


@dataclass(frozen=True)
class TrainResult:
    model_file: Path
    run_id: str
    model_uri: str
    val_accuracy: float
    epochs: int
    seconds: float
    device: str

    def summary(self) -> str:
        return (
            f"val accuracy {self.val_accuracy:.4f} after {self.epochs} epochs"
            f" ({self.seconds:.1f}s on {self.device}); MLflow run {self.run_id}"
        )


def _lightning_module(net, cfg: TrainConfig):
    import lightning as L
    import torch
    import torch.nn.functional as F

    class Classifier(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

        def _common_step(self, batch, stage: str):
            x, y = batch
            logits = self.net(x)
            loss = F.cross_entropy(logits, y)
            acc = (logits.argmax(dim=1) == y).float().mean()
            self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True)
            self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True)
            return loss

        def training_step(self, batch, batch_idx):
            return self._common_step(batch, "train")

        def validation_step(self, batch, batch_idx):
            self._common_step(batch, "val")

        def configure_optimizers(self):
            opt = torch.optim.AdamW(
                self.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
            )
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=cfg.learning_rate, total_steps=self.trainer.estimated_stepping_batches
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    return Classifier()


def _epoch_reporter(total_epochs: int, on_epoch: EpochHook | None):
    """A callback that prints one short line per epoch and hands the metrics on."""
    import lightning as L

    class EpochReporter(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            self._start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.sanity_checking or not trainer.is_global_zero:
                return
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if "/" in k}
            epoch = trainer.current_epoch + 1
            shown = "  ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
            took = time.perf_counter() - self._start
            print(f"  epoch {epoch:>3}/{total_epochs}  {shown}  ({took:.1f}s)", flush=True)
            if on_epoch is not None:
                on_epoch(epoch, metrics)

    return EpochReporter()


def _loader(split: Split, batch_size: int, shuffle: bool, seed: int):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    dataset = TensorDataset(torch.from_numpy(split.x), torch.from_numpy(split.y))
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


def fit(
    net,
    cfg: TrainConfig,
    seed: int,
    train: Split,
    val: Split,
    on_epoch: EpochHook | None = None,
) -> FitResult:
    """Train ``net`` on ``train``, validating on ``val`` after every epoch."""
    import lightning as L

    from components.logs import quiet_libraries

    quiet_libraries()
    L.seed_everything(seed, workers=True, verbose=False)
    history: list[dict[str, float]] = []

    def record(epoch: int, metrics: dict[str, float]) -> None:
        history.append({"epoch": epoch, **metrics})
        if on_epoch is not None:
            on_epoch(epoch, metrics)

    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[_epoch_reporter(cfg.epochs, record)],
    )
    module = _lightning_module(net, cfg)
    start = time.perf_counter()
    trainer.fit(
        module,
        train_dataloaders=_loader(train, cfg.batch_size, shuffle=True, seed=seed),
        val_dataloaders=_loader(val, 512, shuffle=False, seed=seed),
    )
    seconds = time.perf_counter() - start
    device = str(trainer.strategy.root_device)
    return FitResult(net=module.net.cpu().eval(), history=history, seconds=seconds, device=device)


def net_spec(params: Params, meta: dict, train: Split):
    """The network for this data: a CNN for images and an MLP for tables, unless params say."""
    from components.models import NetSpec

    cfg = params.train
    kind = cfg.model if cfg.model != "auto" else ("cnn" if meta["kind"] == "image" else "mlp")
    if kind == "cnn" and meta["kind"] != "image":
        raise ValueError("train.model: 'cnn' needs image data; use 'mlp' or 'auto' for tables")
    pixel_max = params.validate_.pixel_max or meta.get("pixel_max") or 1.0
    mean = std = ()
    if meta["kind"] == "tabular":
        mean = tuple(float(v) for v in np.nanmean(train.x, axis=0))
        std = tuple(float(v) for v in np.nanstd(train.x, axis=0))
    return NetSpec(
        kind=kind,
        input_shape=tuple(meta["input_shape"]),
        num_classes=len(meta["classes"]),
        conv_width=cfg.width,
        hidden=cfg.hidden,
        mlp_layers=tuple(cfg.mlp_layers),
        dropout=cfg.dropout,
        pixel_max=float(pixel_max),
        feature_mean=mean,
        feature_std=std,
    )


def train_stage(params: Params, ws: Workspace) -> TrainResult:
    """Train on the prepared splits, track the run in MLflow, save the weights."""
    import torch

    from components import tracking
    from components.models import Probabilities, build_net, save_net

    meta = load_meta(ws.prepared)
    train, val = load_split(ws.prepared, "train"), load_split(ws.prepared, "val")
    spec = net_spec(params, meta, train)
    torch.manual_seed(params.seed)
    net = build_net(spec)

    with tracking.start_run(
        ws,
        experiment=params.data.name,
        run_name=f"train-{spec.kind}",
        tags=tracking.lineage_tags(ws, params, meta),
    ) as run:
        run.log_params(params.flat())
        print(f"training {spec.kind} on {len(train)} samples for {params.train.epochs} epochs")
        result = fit(net, params.train, params.seed, train, val, on_epoch=run.log_epoch)
        run.set_tags({"device": result.device})
        run.log_metrics({"train_seconds": result.seconds})
        ws.models.mkdir(parents=True, exist_ok=True)
        save_net(result.net, spec, ws.model_file)
        run.log_artifact(ws.model_file, WEIGHTS_FOLDER)  # what compression rebuilds from
        example = np.ascontiguousarray(val.x[:4], dtype=np.float32)
        model_uri = run.log_torch_model(Probabilities(result.net), example)

    val_acc = result.history[-1].get("val/acc", float("nan")) if result.history else float("nan")
    record = TrainResult(
        model_file=ws.model_file,
        run_id=run.run_id,
        model_uri=model_uri,
        val_accuracy=float(val_acc),
        epochs=len(result.history),
        seconds=result.seconds,
        device=result.device,
    )
    write_json(ws.train_record, record)
    return record


def read_train_record(ws: Workspace) -> TrainResult:
    fields = read_json(ws.train_record, "train")
    fields["model_file"] = Path(fields["model_file"])
    return TrainResult(**fields)
