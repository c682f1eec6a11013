"""The python family: your own PyTorch module, built by a function of yours.

``train.model: python`` and ``train.python.factory: "package.module:function"`` (importable
from the workspace, the folder of params.yaml, or an installed package). The function is
given the data's ``DataSpec`` (``components.core.families``: the kind, the input shape, the
number of classes, the pixel scale, the tables' statistics, the vocabulary size) and returns
a ``torch.nn.Module`` mapping a batch to logits: images arrive as float32 pixels (N x H x W,
or N x C x H x W) on their own scale (``pixel_max``), table rows as float32 encoded columns
(NaN where a gap was kept), texts as token ids (cast them with ``.long()``). It then trains,
is tracked, registered, exported to ONNX, compressed where a variant applies, served and
retrained like any family: docs/training.md shows one. A ``LightningModule`` whose
``training_step`` is its own trains as it is (``components.train.objectives.AsIs``): its
step on ``(x, y)`` batches, what it logs, its ``configure_optimizers`` where it has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from components.core.families import Family, NetSpec

SKIPS = {
    "structured": "removes channels and neurons by the layer types of mloop's own networks;"
                  " yours may be wired otherwise",
}  # fmt: skip


@dataclass(frozen=True)
class PythonConfig:
    __pydantic_config__ = {"extra": "forbid"}

    # "package.module:function": given the DataSpec, returns an nn.Module (a LightningModule
    # with a training_step of its own trains with it, and its configure_optimizers)
    factory: str = ""

    def __post_init__(self) -> None:
        if self.factory and self.factory.count(":") != 1:
            raise ValueError(f"factory {self.factory!r}: expected 'package.module:function'")


def factory_of(path: str):
    """The function ``path`` names ("package.module:function")."""
    if not path:
        raise ValueError("train.python.factory is empty: name your 'package.module:function'")
    module, _, name = path.partition(":")
    try:
        found = getattr(import_module(module), name)
    except ImportError as err:
        raise ValueError(f"train.python.factory: cannot import {module!r} ({err})") from None
    except AttributeError:
        raise ValueError(f"train.python.factory: {module} has no {name!r}") from None
    if not callable(found):
        raise ValueError(f"train.python.factory: {path} is not a function")
    return found


def build(spec: NetSpec):
    import torch  # where a net is built

    made = factory_of(spec.options.factory)(spec.data)
    if not isinstance(made, torch.nn.Module):
        raise TypeError(f"train.python.factory {spec.options.factory} returned"
                        f" {type(made).__name__}, not a torch.nn.Module")  # fmt: skip
    return made


CARRIED = "code"  # the Bento's copy of the factory's module (or its package)


def pack(spec: NetSpec, folder: Path) -> None:
    """The factory's top-level module or package, copied into ``folder`` (not one that is
    installed: the served environment installs it as training's did). It is code that runs:
    at training, and where the served model is explained."""
    import importlib.util
    import shutil
    import sysconfig

    top = spec.options.factory.partition(":")[0].split(".")[0]
    found = importlib.util.find_spec(top)
    if found is None or found.origin in (None, "built-in", "frozen"):
        raise ValueError(f"train.python.factory: cannot find module {top!r} to package")
    installed = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    origin = Path(found.origin).resolve()
    if any(origin.is_relative_to(p) for p in installed):
        return
    out = folder / CARRIED
    out.mkdir(parents=True, exist_ok=True)
    if found.submodule_search_locations:  # a package: its folder
        shutil.copytree(origin.parent, out / top, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
    else:
        shutil.copyfile(origin, out / origin.name)


def unpack(spec: NetSpec, folder: Path) -> NetSpec:
    """Where the factory's module is imported from: the copy ``pack`` carried first."""
    import sys

    carried = str(folder / CARRIED)
    if (folder / CARRIED).is_dir() and carried not in sys.path:
        sys.path.insert(0, carried)
    return spec


FAMILY = Family(name="python", config=PythonConfig, reads=("image", "tabular", "text"),
                build=build, skips=SKIPS, pack=pack, unpack=unpack)  # fmt: skip
