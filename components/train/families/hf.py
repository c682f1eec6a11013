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

from dataclasses import dataclass

from components.core.families import Family, NetSpec, within

SKIPS = {
    "pruned": "unstructured pruning of a pretrained encoder (not built for pretrained models)",
    "structured": "removes conv channels and dense neurons; an encoder's heads are not",
    "static-int8": "calibrates activations per tensor; a transformer's dynamic int8 needs none",
}  # fmt: skip
MODES = ("full", "frozen", "lora")


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
    # How it fine-tunes, in place of train's keys of the same names (from-scratch nets')
    learning_rate: float = 3e-5
    schedule: str = "linear"  # warm-up over a tenth of the steps, then linear decay
    epochs: int = 3
    batch_size: int = 32
    weight_decay: float = 0.01
    dropout: float = 0.1

    def __post_init__(self) -> None:
        within(self, lora_r=(1, 1024), lora_alpha=(1, 4096), epochs=(1, 1000),
               batch_size=(1, 65536))  # fmt: skip
        if not 0 < self.learning_rate < 1 or not 0 <= self.weight_decay < 1:
            raise ValueError("learning_rate from above 0 to below 1, weight_decay below 1")
        if self.schedule not in ("onecycle", "cosine", "linear", "constant"):
            raise ValueError(f"schedule {self.schedule!r}: onecycle, cosine, linear or constant")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout {self.dropout!r}: from 0 to below 1")
        if self.pooling not in ("mean", "cls"):
            raise ValueError(f"pooling {self.pooling!r}: expected mean or cls")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout {self.lora_dropout!r}: from 0 to below 1")


def located(options: HFConfig):
    from components.core.pretrained import locate

    return locate(options.model, options.revision, options.trust_pickle)


def build(spec: NetSpec):
    from components.train.hf_model import PretrainedTextClassifier  # transformers, torch

    return PretrainedTextClassifier(spec, located(spec.options))


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
    name="hf", config=HFConfig, reads=("text",), build=build, skips=SKIPS, token_ids=True,
    onnx_int8="dynamic", tokenizer=tokenizer, adapt=adapt, settle=settle, lineage=lineage,
    overrides=("learning_rate", "schedule", "epochs", "batch_size", "weight_decay", "dropout"),
)  # fmt: skip
