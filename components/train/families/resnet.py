"""The ResNet family: residual stages of basic blocks, width doubling per stage
(``models.ResNet``). ``train.model: resnet``; ``train.resnet`` sizes it. Its student has
``compress.distill.width`` and one block per stage, or is an MLP."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from components.core.families import Family, NetSpec, within
from components.train.families import mlp


@dataclass(frozen=True)
class ResNetConfig:
    __pydantic_config__ = {"extra": "forbid"}

    width: int = 32  # channels of the first stage (doubling each stage)
    blocks: tuple[int, ...] = (2, 2, 2)  # residual blocks per stage

    def __post_init__(self) -> None:
        within(self, width=(1, 1024), blocks=(1, 64))


def build(spec: NetSpec):
    from components.train.models import ResNet  # torch: imported when a net is built

    return ResNet(spec)


def student(teacher: NetSpec, distill) -> NetSpec:
    if distill.student == "mlp":
        return mlp.student(teacher, distill)
    blocks = tuple(1 for _ in teacher.options.blocks)
    return dataclasses.replace(teacher, dropout=distill.dropout,
                               options=ResNetConfig(distill.width, blocks))  # fmt: skip


FAMILY = Family(name="resnet", config=ResNetConfig, reads=("image",), build=build,
                student=student)  # fmt: skip
