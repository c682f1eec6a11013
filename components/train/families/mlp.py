"""The MLP family: dense layers on table rows or flattened images (``models.MLP``).

``train.model: mlp`` (the default for tables); ``train.mlp`` sizes it. It standardises its
input itself (the training split's statistics, folded into the net), so serving sends raw
values. Its student is an MLP of ``compress.distill.mlp_layers``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from components.core.families import Family, NetSpec, within


@dataclass(frozen=True)
class MlpConfig:
    __pydantic_config__ = {"extra": "forbid"}

    layers: tuple[int, ...] = (256, 128)  # units of each hidden layer

    def __post_init__(self) -> None:
        within(self, layers=(1, 8192))


def build(spec: NetSpec):
    from components.train.models import MLP  # torch: imported when a net is built

    return MLP(spec)


def student(teacher: NetSpec, distill) -> NetSpec:
    """An MLP of ``compress.distill.mlp_layers`` on the teacher's data: the student of an MLP,
    and of any family with ``compress.distill.student: mlp``."""
    return dataclasses.replace(teacher, family="mlp", dropout=distill.dropout,
                               options=MlpConfig(tuple(distill.mlp_layers)))  # fmt: skip


FAMILY = Family(name="mlp", config=MlpConfig, reads=("image", "tabular"), build=build,
                student=student)  # fmt: skip
