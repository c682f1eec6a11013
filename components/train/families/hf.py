"""The hf family: a pretrained Hugging Face encoder with a classification head, fine-tuned.

``train.model: hf`` and ``train.hf.model: <Hub id or local folder>`` (``revision`` pins a
Hub commit). The texts are read with the model's own tokenizer (prepare reads its
``tokenizer.json``; nothing of the tokenizer is learnt here), up to the model's input limit.
``train.finetune`` says how it adapts: ``full`` (every weight), ``frozen`` (the head only:
the CPU-cheap floor) or ``lora`` (PEFT adapters on ``train.hf.lora_targets``, merged into
the encoder before it is saved, exported and served). Weights are safetensors only unless
``train.hf.trust_pickle`` (``components.core.pretrained``); ``trust_remote_code`` stays off
unless set. It exports to ONNX with free batch and sequence axes and quantizes BERT's way
(dynamic int8).

Only the standard library here: the encoder (``train/hf_model.py``) imports transformers
when a net is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from components.core.families import Family, NetSpec, within
from components.core.pretrained import LAYER
from components.train.families.transformer import SKIPS as ENCODER_SKIPS

SKIPS = {**ENCODER_SKIPS, "pruned": "unstructured pruning of a pretrained encoder (not built)"}
# What train.finetune trains, by default: (learning rate, epochs). The whole encoder moves at
# fine-tuning's usual 3e-5 for a few epochs; LoRA's few adapter weights take a larger step;
# the frozen encoder's head is a linear model on cached encodings, cheap epochs at 5e-3
TUNED = {"full": (3e-5, 3), "lora": (5e-4, 3), "frozen": (5e-3, 40)}


@dataclass(frozen=True)
class HFConfig:
    __pydantic_config__ = {"extra": "forbid"}

    model: str = ""  # a Hub id (sentence-transformers/all-MiniLM-L6-v2) or a local folder
    revision: str | None = None  # a Hub commit or tag; None: the cache's or the Hub's main
    pooling: str = "mean"  # what the head reads: the tokens' mean (mean) or the first (cls)
    trust_pickle: bool = False  # load pickled .bin weights (they run code when loaded)
    trust_remote_code: bool = False  # run the model repository's own Python code
    lora_r: int = 8  # LoRA rank (train.finetune: lora)
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    lora_targets: tuple[str, ...] = ("query", "value")  # the modules LoRA adapts
    layers: int = 0  # encoder layers kept, the lowest (0: all; a distilled student: half)
    freeze_layers: int = 0  # full fine-tuning: the embeddings and this many lowest layers fixed
    # How it fine-tunes, in place of train's keys of the same names (from-scratch nets');
    # learning_rate and epochs None: by train.finetune (TUNED)
    learning_rate: float | None = None
    schedule: str = "linear"  # warm-up over a tenth of the steps, then linear decay
    epochs: int | None = None
    batch_size: int = 32
    weight_decay: float = 0.01
    dropout: float = 0.1

    def __post_init__(self) -> None:
        within(self, lora_r=(1, 1024), lora_alpha=(1, 4096), batch_size=(1, 65536),
               layers=(0, 1000), freeze_layers=(0, 1000))  # fmt: skip
        if self.epochs is not None:
            within(self, epochs=(1, 1000))
        if not 0 < (self.learning_rate or 0.1) < 1 or not 0 <= self.weight_decay < 1:
            raise ValueError("learning_rate from above 0 to below 1, weight_decay below 1")
        if self.schedule not in ("onecycle", "cosine", "linear", "constant"):
            raise ValueError(f"schedule {self.schedule!r}: onecycle, cosine, linear or constant")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout {self.dropout!r}: from 0 to below 1")
        if self.pooling not in ("mean", "cls"):
            raise ValueError(f"pooling {self.pooling!r}: expected mean or cls")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout {self.lora_dropout!r}: from 0 to below 1")
        object.__setattr__(self, "model", resolved(self.model))


def resolved(model: str) -> str:
    """``model`` as the params file's folder names it (the workspace), resolved once: a
    folder's absolute path, a link's target's; a Hub id as it is. No later stage or server
    worker resolves it again from wherever it runs."""
    import os

    from components.core.train_config import params_folder

    root = params_folder()
    if not model or root is None:
        return model
    path = Path(os.path.expanduser(model))
    local = model.startswith((".", "/", "~")) or (root / path).is_dir()
    return os.path.realpath(root / path) if local else model


def located(options: HFConfig):
    from components.core.pretrained import locate

    return locate(options.model, options.revision, options.trust_pickle)


def build(spec: NetSpec, weights: bool = True):
    from components.core.kinds import kind
    from components.train import hf_model  # transformers, torch: where a net is built

    made = hf_model.PretrainedImageClassifier if kind(spec.data.kind).pixels else (
        hf_model.PretrainedTextClassifier)  # fmt: skip
    return made(spec, located(spec.options), weights)


def blank(spec: NetSpec):
    """The architecture from its config alone: saved weights are loaded next."""
    from components.core.kinds import kind
    from components.core.pretrained import locate
    from components.train import hf_model

    made = hf_model.PretrainedImageClassifier if kind(spec.data.kind).pixels else (
        hf_model.PretrainedTextClassifier)  # fmt: skip
    o = spec.options
    return made(spec, locate(o.model, o.revision, o.trust_pickle, need_weights=False), False)


CARRIED = "base"  # the Bento's copy of the base model's config and tokenizer files


def pack(spec: NetSpec, folder: Path) -> None:
    """What the architecture is built from, without its weights (the trained ones travel
    beside): the base model's config, tokenizer and processor files, into ``folder``."""
    import shutil

    source = located(spec.options).folder
    out = folder / CARRIED
    out.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        if file.suffix in (".json", ".txt", ".model") and file.is_file() and not (
                file.name.endswith(".index.json")):  # fmt: skip
            shutil.copyfile(file, out / file.name)


def unpack(spec: NetSpec, folder: Path) -> NetSpec:
    """``spec`` built from the files ``pack`` carried (no path of the training machine)."""
    carried = folder / CARRIED
    if not carried.is_dir():
        return spec
    options = dataclasses.replace(spec.options, model=str(carried), revision=None)
    return dataclasses.replace(spec, options=options)


def student(teacher: NetSpec, distill) -> NetSpec | None:
    """DistilBERT's student: the teacher's text encoder at half its depth (an image
    model's layers are named otherwise by each architecture: none)."""
    from components.core.kinds import kind

    if not kind(teacher.data.kind).tokenized:
        return None
    depth = teacher.options.layers or located(teacher.options).depth()
    if depth is None or depth < 2:
        return None
    half = dataclasses.replace(teacher.options, layers=depth // 2, freeze_layers=0)
    return dataclasses.replace(teacher, options=half, dropout=distill.dropout)


def half_depth_start(teacher, spec: NetSpec) -> dict:
    """DistilBERT's start: the teacher's embeddings, pooling and head, and one of every two
    of its layers (0, 2, 4, ...) as the student's 0, 1, 2, ..."""
    state = {}
    for key, value in teacher.state_dict().items():
        found = LAYER.match(key)
        if found is None:
            state[key] = value.clone()
        elif int(found[2]) % 2 == 0 and int(found[2]) // 2 < spec.options.layers:
            state[f"{found[1]}{int(found[2]) // 2}.{key[found.end() :]}"] = value.clone()
    return state


def tuned(options: HFConfig, mode: str) -> dict:
    """The train keys this family sets, for train.finetune ``mode``."""
    learning_rate, epochs = TUNED[mode]
    return {"learning_rate": options.learning_rate or learning_rate,
            "epochs": options.epochs or epochs, "schedule": options.schedule,
            "batch_size": options.batch_size, "weight_decay": options.weight_decay,
            "dropout": options.dropout}  # fmt: skip


def tokenizer(options: HFConfig):
    """The model's own tokenizer file and its input limit, for prepare."""
    found = located(options)
    if not found.tokenizer_file.is_file():
        from components.core.pretrained import PretrainedError

        raise PretrainedError(f"train.hf.model {options.model!r}: no tokenizer.json in"
                              f" {found.folder} (a fast tokenizer's file)")  # fmt: skip
    return found.tokenizer_file, found.max_tokens()


def adapt(net, mode: str, options: HFConfig):
    from components.train.hf_model import adapted

    return adapted(net, mode, options)


def settle(net):
    from components.train.hf_model import merged

    return merged(net)


def lineage(options: HFConfig) -> dict[str, str]:
    return located(options).lineage()


FAMILY = Family(
    name="hf", config=HFConfig, reads=("text", "image"), build=build, blank=blank, student=student,
    student_start=half_depth_start, skips=SKIPS, token_ids=True, onnx_int8="dynamic",
    tokenizer=tokenizer, adapt=adapt, settle=settle, lineage=lineage, overrides=tuned,
    pack=pack, unpack=unpack,
)  # fmt: skip
