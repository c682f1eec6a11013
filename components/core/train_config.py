"""The ``train`` section of ``params.yaml``: how the network trains, and which model family.

Each family's own section (``train.<family>``) is validated by that family's config (a frozen
dataclass declared in its module, ``components.core.families``), after the modules named in
``train.families`` are imported, so a misspelt key of a family of your own fails at load,
named, like any other.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from components.core import families
from components.core.sections import Section as _Section

# The folder of the params file being read: train.families import from it (the workspace).
_root: contextvars.ContextVar[Path | None] = contextvars.ContextVar("root", default=None)


@contextlib.contextmanager
def workspace_root(folder: Path):
    """While params from ``folder`` are read, modules of ``train.families`` import from it."""
    token = _root.set(folder)
    try:
        yield
    finally:
        _root.reset(token)


def params_folder() -> Path | None:
    """The folder of the params file being read (None outside a read): a family's config
    resolves its relative paths against it, once."""
    return _root.get()


# Keys of train that became a family's own (issue 27): where each one went.
MOVED = {"width": "train.cnn.width, train.resnet.width or train.transformer.width",
         "hidden": "train.cnn.hidden", "mlp_layers": "train.mlp.layers",
         "resnet_blocks": "train.resnet.blocks", "depth": "train.transformer.depth",
         "heads": "train.transformer.heads", "pooling": "train.transformer.pooling"}  # fmt: skip


class FamilySectionError(Exception):
    """A ``train.<family>`` section (or a family module) is wrong: ``(key, message)`` lines.

    Not a ValueError, so that pydantic passes it on as it is and ``parse_params`` names each
    key the way it names the others."""

    def __init__(self, lines: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{key}: {message}" for key, message in lines))
        self.lines = lines


class TrainConfig(_Section):
    """The network (PyTorch Lightning), its baseline, and where it trains."""

    # The model family: auto (the data kind's own: cnn for images, mlp for tables,
    # transformer for texts), a built-in one (cnn, mlp, resnet, transformer) or one of
    # train.families. Each family's section, train.<family>, sizes it (below).
    model: str = Field("auto", pattern=r"^[a-z][a-z0-9_-]*$")
    # Modules that declare families of your own ("package.module", importable from the
    # workspace or an installed package, each with a FAMILY): docs/training.md
    families: list[str] = []
    # Masked-language-model pre-training epochs before fine-tuning (BERT's recipe), on the
    # training texts and data.text.unlabelled; 0: none
    pretrain_epochs: int = Field(0, ge=0)
    # Also fine-tune the same encoder from the same start without pre-training, and report
    # what pre-training bought on the val split (reports/pretraining.json; a second training)
    pretrain_report: bool = False
    # How a pretrained family (hf) adapts: every weight (full), the head alone on the
    # frozen encoder (frozen), or LoRA adapters (lora: train.hf.lora_*), merged before saving
    finetune: Literal["full", "frozen", "lora"] = "full"
    dropout: float = Field(0.25, ge=0, lt=1)
    epochs: int = Field(20, ge=1)
    # Cap on the batches of each epoch (training and validation): smoke runs, benchmarks.
    limit_batches: int | None = Field(None, ge=1)
    batch_size: int = Field(64, ge=1)
    # Sum the gradients of this many batches before each optimizer step: an effective
    # batch of batch_size x this, in the memory of one batch
    accumulate_grad_batches: int = Field(1, ge=1)
    learning_rate: float = Field(0.002, gt=0)
    weight_decay: float = Field(0.0001, ge=0)
    # linear: warm-up over the first tenth of the steps, then linear decay (fine-tuning's)
    schedule: Literal["onecycle", "cosine", "linear", "constant"] = "onecycle"
    gradient_clip: float = Field(1.0, ge=0)  # 0: off
    # The models a user would pick instead, each trained and tracked beside the network, a
    # challenger like it: auto = gradient-boosted trees and a linear model for tables
    # ([trees, linear]), TF-IDF + logistic regression for texts, none for images; a list
    # of them; none (or []) for the network alone.
    baseline: Literal["auto", "none"] | list[Literal["trees", "linear", "tfidf"]] = "auto"
    # A regression network's loss (classification: cross-entropy): mse, or huber (less
    # pulled by outliers; delta 1 on the standardised target)
    loss: Literal["mse", "huber"] = "mse"
    # "balanced": each class's loss weighs n / (classes x its count), for skewed labels
    class_weights: Literal["none", "balanced"] = "none"
    early_stopping_patience: int = Field(0, ge=0)  # epochs without val/loss progress; 0: off
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = "auto"
    compile: bool = False  # torch.compile the network
    channels_last: bool = True  # memory format of conv nets on the GPU
    deterministic: bool = False  # deterministic kernels (slower)
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int | Literal["auto"] = "auto"
    strategy: Literal["auto", "ddp", "ddp_spawn", "fsdp"] = "auto"
    num_nodes: int = Field(1, ge=1)

    _nets: dict[str, object] = PrivateAttr(default_factory=dict)  # train.<family> sections

    @field_validator("baseline", mode="before")
    @classmethod
    def _one_baseline(cls, value):
        """One name is a list of one (``baseline: trees``, as before lists)."""
        return [value] if value in ("trees", "linear", "tfidf") else value

    def net(self, family: str):
        """The config of ``family`` (its section ``train.<family>``, or its defaults)."""
        return self._nets.get(family) or families.get(family).options()

    @model_validator(mode="wrap")
    @classmethod
    def _family_sections(cls, data, handler):
        """``train.<family>`` sections are validated by their family's own config; the
        modules of ``train.families`` are imported first, so their sections count too."""
        if not isinstance(data, dict):
            return handler(data)
        data, lines = dict(data), []
        for old in set(data) & set(MOVED):
            lines.append((f"train.{old}", f"moved to {MOVED[old]} (model families)"))
        try:  # known to these params: built in, installed, and their own train.families
            own = families.load(data.get("families") or [], _root.get())
        except ValueError as err:
            lines.append(("train.families", str(err).removeprefix("train.families: ")))
            own = []
        if lines:
            raise FamilySectionError(lines)
        known = set(families.BUILTIN) | families.installed() | {f.name for f in own}
        sections = {name: data.pop(name) for name in sorted(known) if name in data}
        made = handler(data)
        for name, raw in sections.items():
            try:
                made._nets[name] = TypeAdapter(families.get(name).config).validate_python(
                    raw if raw is not None else {})  # fmt: skip
            except ValidationError as err:
                for e in err.errors():
                    unknown = e["type"] == "unexpected_keyword_argument"
                    said = "unknown key" if unknown else e["msg"].removeprefix("Value error, ")
                    lines.append((".".join(["train", name, *map(str, e["loc"])]), said))
        if made.model != "auto" and made.model not in known:
            lines.append(("train.model", f"unknown model family {made.model!r}; known: auto, "
                          f"{', '.join(sorted(known))} (your own: train.families)"))  # fmt: skip
        if lines:
            raise FamilySectionError(lines)
        tuned = families.get(made.model).overrides if made.model != "auto" else None
        if tuned is not None:  # a pretrained family fine-tunes at 3e-5, not at 2e-3
            made = made.model_copy(update=tuned(made.net(made.model), made.finetune))
        return made

    @model_serializer(mode="wrap")
    def _with_sections(self, handler):
        out = handler(self)
        for name, cfg in self._nets.items():
            out[name] = {k: list(v) if isinstance(v, tuple) else v
                         for k, v in dataclasses.asdict(cfg).items()}  # fmt: skip
        return out
