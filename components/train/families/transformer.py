"""The transformer family: a small BERT-style text encoder (``models.TextEncoder``).

``train.model: transformer`` (the default for texts); ``train.transformer`` sizes it. It reads
token ids (int64, any length up to the data's), pre-trains as a masked language model when
``train.pretrain_epochs`` asks, quantizes BERT's way (dynamic int8), and its student is
DistilBERT's: half the blocks, started from every second block of the teacher.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from components.core.families import Family, NetSpec, within

# Not built for a text encoder, and why: its weights live in linear layers and embeddings,
# where BERT's int8 is dynamic (no activation calibration) and its student is half as deep.
SKIPS = {
    "pruned": "unstructured pruning of a small encoder's attention and embeddings (not built:"
              " attention-head pruning is optional in issue 20)",
    "structured": "removes conv channels and dense neurons; an encoder's heads are not",
    "static-int8": "calibrates activations per tensor; a transformer's dynamic int8 needs none",
}  # fmt: skip


@dataclass(frozen=True)
class TransformerConfig:
    __pydantic_config__ = {"extra": "forbid"}

    width: int = 32  # the width of every token's state
    depth: int = 2  # encoder blocks (pre-LN)
    heads: int = 4  # attention heads (width is a multiple of them)
    pooling: str = "cls"  # what the classifier reads: the [CLS] state (cls) or the tokens' mean

    def __post_init__(self) -> None:
        within(self, width=(1, 1024), depth=(1, 48), heads=(1, 64))
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not a multiple of heads {self.heads}")
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"pooling {self.pooling!r}: expected cls or mean")


def build(spec: NetSpec):
    from components.train.models import TextEncoder  # torch: imported when a net is built

    return TextEncoder(spec)


def student(teacher: NetSpec, distill) -> NetSpec:
    """DistilBERT's student: the same width, half the blocks."""
    half = dataclasses.replace(teacher.options, depth=max(1, teacher.options.depth // 2))
    return dataclasses.replace(teacher, options=half, dropout=distill.dropout)


def half_depth_start(teacher, spec: NetSpec) -> dict:
    """DistilBERT's initialisation of a half-depth student: the teacher's embeddings, final
    norm and heads, and one block of every two (blocks 0, 2, 4, ...)."""
    state = {k: v.clone() for k, v in teacher.state_dict().items()
             if not k.startswith("blocks.")}  # fmt: skip
    for i in range(spec.options.depth):
        prefix = f"blocks.{2 * i}."
        for key, value in teacher.state_dict().items():
            if key.startswith(prefix):
                state[f"blocks.{i}." + key.removeprefix(prefix)] = value.clone()
    return state


FAMILY = Family(
    name="transformer", config=TransformerConfig, reads=("text",), build=build,
    student=student, student_start=half_depth_start, skips=SKIPS, token_ids=True,
    onnx_int8="dynamic", masked_lm=True,
)  # fmt: skip
