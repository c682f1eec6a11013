"""A model family that lives outside mloop: what a user writes to bring a network of their own.

Named in ``params.yaml`` as ``train.families: [tests.families.tiny]`` and chosen with
``train.model: tiny``; ``train.tiny.hidden`` sizes it. Nothing in ``components/`` knows it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from components.core.families import Family, NetSpec, within


@dataclass(frozen=True)
class TinyConfig:
    __pydantic_config__ = {"extra": "forbid"}  # a misspelt key fails at load, named

    hidden: int = 16  # units of its one hidden layer

    def __post_init__(self) -> None:
        within(self, hidden=(1, 512))


class TinyNet(nn.Module):
    """Scale, flatten, one tanh layer, the classifier: small enough to train in seconds."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        inputs = math.prod(spec.data.input_shape)
        self.register_buffer("scale", torch.tensor(1.0 / spec.data.pixel_max), persistent=False)
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(inputs, spec.options.hidden), nn.Tanh(),
            nn.Dropout(spec.dropout), nn.Linear(spec.options.hidden, spec.data.num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x * self.scale)


FAMILY = Family(name="tiny", config=TinyConfig, reads=("image",), build=TinyNet)
