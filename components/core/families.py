"""Model families as plug-ins: one ``Family`` per architecture, one registry every stage asks.

A family is a module with a ``FAMILY`` (a ``Family``): the name ``train.model`` gives it, its
section of ``params.yaml`` (``train.<name>``, a frozen dataclass), the data kinds it reads, how
its network is built from a ``NetSpec``, how it exports to ONNX, which compression variants
do not apply to it and why, and how its distilled student is made. The built-in families live
in ``components/train/families/``; a family of your own is any importable module named in
``train.families`` (or an entry point in the ``mloop.families`` group), registered the same
way, so nothing outside its own module says ``if model == "cnn"``. Modules are imported on
first use, as Hugging Face's Auto classes do, so listing families costs no torch import.

Only the standard library here: a bare GPU machine (``benchmarks/gpu_check.sh``) builds nets
through this registry without pydantic.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

# name -> the module that declares it, imported on first use by its name: the one place core
# names a stage package's modules, as a plug-in table (the modules need only the standard
# library; their nets import torch when built). Tests follow these names as imports.
BUILTIN: dict[str, str] = {
    "cnn": "components.train.families.cnn",
    "mlp": "components.train.families.mlp",
    "resnet": "components.train.families.resnet",
    "transformer": "components.train.families.transformer",
    "hf": "components.train.families.hf",
    "python": "components.train.families.python",
}
ENTRY_POINTS = "mloop.families"  # installed packages may declare families here


@dataclass(frozen=True)
class DataSpec:
    """What the prepared data tells every family: the kind, the input, the classes, and the
    training split's statistics a network folds into its first layer."""

    kind: str  # the data kind's name: image, tabular, text
    input_shape: tuple[int, ...]  # (H, W), (C, H, W), (F,) or (max_length,)
    num_classes: int  # 1: a regression (the net answers a value)
    pixel_max: float = 1.0  # images: inputs are divided by this
    feature_mean: tuple[float, ...] = ()  # tables: standardisation, train split
    feature_std: tuple[float, ...] = ()
    feature_fill: tuple[float, ...] = ()  # tables: what a missing value (NaN) becomes
    vocab_size: int = 0  # texts: the tokenizer's vocabulary ([PAD] = 0)
    # A regression (num_classes 1: one value per input): the target as the net learns it,
    # (log1p(y) if target_log1p) - target_shift) / target_scale; its answers are inverted
    target_shift: float = 0.0
    target_scale: float = 1.0
    target_log1p: bool = False


@dataclass(frozen=True)
class NetSpec:
    """Everything needed to rebuild a network from its saved weights."""

    family: str  # a registered family's name
    data: DataSpec
    options: Any  # the family's own config (``Family.config``), frozen
    dropout: float = 0.25

    @classmethod
    def of(cls, family: str, data: DataSpec, dropout: float = 0.25, **options) -> NetSpec:
        """``family``'s net for ``data``, its config from ``options`` (else its defaults)."""
        return cls(family, data, get(family).options(options), dropout)

    def to_dict(self) -> dict:
        return {"family": self.family, "module": get(self.family).module,
                "data": dataclasses.asdict(self.data), "dropout": self.dropout,
                "options": dataclasses.asdict(self.options)}  # fmt: skip

    @classmethod
    def from_dict(cls, values: dict) -> NetSpec:
        if "kind" in values and "family" not in values:
            values = _flat_spec(values)  # a weights file written before families
        if values.get("module") and values["family"] not in _registered:
            load([values["module"]])
        family = get(values["family"])
        return cls(values["family"], _tuples(DataSpec(**values["data"])),
                   family.options(values["options"]), values.get("dropout", 0.25))  # fmt: skip


def within(cfg, **bounds: tuple[int, int]) -> None:
    """Raise ValueError naming the first field of ``cfg`` (a number, or a list of numbers)
    outside its ``(low, high)`` bounds: a family config's own checks, without pydantic."""
    for name, (low, high) in bounds.items():
        value = getattr(cfg, name)
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not values or any(not low <= v <= high for v in values):
            raise ValueError(f"{name} {value!r}: each from {low} to {high}")


def _tuples(cfg) -> Any:
    """``cfg`` (a dataclass) with its lists as tuples (frozen, hashable), as JSON gave them
    back."""
    return dataclasses.replace(cfg, **{f.name: tuple(getattr(cfg, f.name))
                                       for f in dataclasses.fields(cfg)
                                       if isinstance(getattr(cfg, f.name), list)})  # fmt: skip


@dataclass(frozen=True)
class Family:
    """One model family: what ``train.model: <name>`` trains."""

    name: str
    config: type  # a frozen dataclass: the family's section train.<name> (its defaults too)
    reads: tuple[str, ...]  # the data kinds it takes (DataSpec.kind)
    build: Callable[[NetSpec], Any]  # -> a torch.nn.Module that maps a batch to logits
    # The same architecture without its first weights, where saved weights are loaded next
    # (a pretrained family's from its config, not its weights file; None: build)
    blank: Callable[[NetSpec], Any] | None = None
    # The student the distilled variants train: a NetSpec from the teacher's and
    # compress.distill (None: no distilled variants for this family), and its first
    # weights from the teacher (None: a fresh start).
    student: Callable[[NetSpec, Any], NetSpec | None] | None = None
    student_start: Callable[[Any, NetSpec], dict] | None = None
    skips: Mapping[str, str] = field(default_factory=dict)  # compression variants not built: why
    token_ids: bool = False  # inputs are token ids: int64, a free sequence axis in ONNX
    onnx_int8: str = "static"  # static (QDQ, calibrated) or dynamic (BERT's: no calibration)
    masked_lm: bool = False  # can pre-train as a masked language model (train.pretrain_epochs)
    # A pretrained family's own: the tokenizer file its texts must be read with (None: the
    # data's own, learnt in prepare) and the longest input it reads, from its config
    tokenizer: Callable[[Any], tuple[Path, int]] | None = None
    # How train.finetune adapts a built net before training (frozen, lora, full), and what
    # is saved after it (a LoRA adapter merged into its base): (net, mode, config) -> net
    adapt: Callable[[Any, str, Any], Any] | None = None
    settle: Callable[[Any], Any] | None = None
    lineage: Callable[[Any], dict[str, str]] | None = None  # MLflow tags: what it came from
    # train keys its own section sets for it, by train.finetune: (config, mode) -> {key:
    # value}; a pretrained model fine-tunes at 3e-5 with warm-up and linear decay, not at
    # train's 2e-3, and its frozen encoder's head trains at 5e-3 for 40 cheap epochs
    overrides: Callable[[Any, str], dict[str, Any]] | None = None
    # What a served explainer needs to build the architecture besides its weights, carried
    # in the Bento: ``pack(spec, folder)`` writes it at packaging (a pretrained model's
    # config, your module), ``unpack(spec, folder)`` gives the spec that builds from it
    pack: Callable[[NetSpec, Path], None] | None = None
    unpack: Callable[[NetSpec, Path], NetSpec] | None = None
    module: str = ""  # where it was declared (set on registration)

    def reads_ids(self, net) -> bool:
        """Whether ``net`` of this family reads token ids (``token_ids``; a net of a family
        of two kinds, hf's image models, says so itself)."""
        return getattr(net, "token_ids", self.token_ids)

    def options(self, values: Mapping | None = None) -> Any:
        """The family's config from a mapping (``train.<name>``); its defaults for None."""
        return _tuples(self.config(**dict(values or {})))

    def __repr__(self) -> str:
        return f"<model family {self.name}>"


_registered: dict[str, Family] = {}


def register(family: Family, module: str = "") -> Family:
    """Make ``family`` known by its name; a second family of the same name is refused."""
    known = _registered.get(family.name)
    if known is not None and known.module != (module or family.module):
        raise ValueError(f"model family {family.name!r} is declared twice: in {known.module}"
                         f" and in {module or family.module}")  # fmt: skip
    if not dataclasses.is_dataclass(family.config):
        raise TypeError(f"model family {family.name!r}: its config must be a dataclass")
    family = dataclasses.replace(family, module=module or family.module)
    _registered[family.name] = family
    return family


def load(modules: list[str] | tuple[str, ...], root: Path | None = None) -> list[Family]:
    """Import each module (``package.module``, from ``root`` or an installed package) and
    register its ``FAMILY`` (or each of its ``FAMILIES``)."""
    if root is not None and str(root) not in sys.path:
        sys.path.append(str(root))  # the workspace's own modules, after installed ones
    found = []
    for name in modules:
        try:
            module = import_module(name)
        except ImportError as err:
            raise ValueError(f"train.families: cannot import {name!r} ({err})") from None
        declared = getattr(module, "FAMILIES", None) or [getattr(module, "FAMILY", None)]
        if not all(isinstance(f, Family) for f in declared):
            raise ValueError(f"train.families: {name} declares no FAMILY (a Family) or FAMILIES")
        found += [register(f, name) for f in declared]
    return found


@functools.cache
def _entry_points():
    """Read once a process: every params load asks (about 8 ms a scan here)."""
    from importlib.metadata import entry_points

    return entry_points(group=ENTRY_POINTS)


def installed() -> set[str]:
    """The families installed packages declare (entry points in ``mloop.families``)."""
    return {point.name for point in _entry_points()}


def _load_installed() -> None:
    for point in _entry_points():
        if point.name not in _registered:
            load([point.value.split(":")[0]])


def get(name: str) -> Family:
    """The family of this name: registered, built in, or an installed entry point."""
    if name not in _registered and name in BUILTIN:
        load([BUILTIN[name]])
    if name not in _registered:
        _load_installed()
    try:
        return _registered[name]
    except KeyError:
        raise ValueError(
            f"train.model: unknown model family {name!r}; known: "
            f"{', '.join(names())} (a family of your own: train.families)"
        ) from None


def names() -> list[str]:
    """Every family known now: the built-in ones and those registered."""
    return sorted(set(BUILTIN) | set(_registered))


def _flat_spec(values: dict) -> dict:
    """A NetSpec saved before families (one flat dict, ``kind`` naming the net) in today's form."""
    data = {
        k: values[k]
        for k in (
            "input_shape",
            "num_classes",
            "pixel_max",
            "feature_mean",
            "feature_std",
            "feature_fill",
            "vocab_size",
        )
        if k in values
    }
    family = values["kind"]
    data["kind"] = {"cnn": "image", "resnet": "image", "transformer": "text"}.get(
        family, "tabular" if values.get("feature_mean") else "image")  # fmt: skip
    options = {
        "cnn": {"width": values.get("conv_width"), "hidden": values.get("hidden")},
        "mlp": {"layers": values.get("mlp_layers")},
        "resnet": {"width": values.get("conv_width"), "blocks": values.get("resnet_blocks")},
        "transformer": {"width": values.get("conv_width"), "depth": values.get("depth"),
                        "heads": values.get("heads"), "pooling": values.get("pooling")},
    }[family]  # fmt: skip
    return {"family": family, "data": data, "dropout": values.get("dropout", 0.25),
            "options": {k: v for k, v in options.items() if v is not None}}  # fmt: skip
