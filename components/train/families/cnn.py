"""The CNN family: two 3x3 convolutions, a max-pool, a dense layer (``models.SmallCNN``).

``train.model: cnn`` (the default for images); ``train.cnn`` sizes it. Its student is the
same net with ``compress.distill``'s sizes, or an MLP (``compress.distill.student: mlp``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from components.core.families import Family, NetSpec, within
from components.train.families import mlp


@dataclass(frozen=True)
class CnnConfig:
    __pydantic_config__ = {"extra": "forbid"}

    width: int = 32  # channels of the first conv layer (twice as many in the second)
    hidden: int = 128  # units of the dense layer

    def __post_init__(self) -> None:
        within(self, width=(1, 1024), hidden=(1, 8192))


def build(spec: NetSpec):
    from components.train.models import SmallCNN  # torch: imported when a net is built

    return SmallCNN(spec)


def student(teacher: NetSpec, distill) -> NetSpec:
    if distill.student == "mlp":
        return mlp.student(teacher, distill)
    return dataclasses.replace(teacher, dropout=distill.dropout,
                               options=CnnConfig(distill.width, distill.hidden))  # fmt: skip


FAMILY = Family(name="cnn", config=CnnConfig, reads=("image",), build=build, student=student)
