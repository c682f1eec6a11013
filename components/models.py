"""Network architectures. Plain ``torch.nn``: no Lightning, no tracking.

Every network takes raw images, ``(N, H, W)`` or ``(N, C, H, W)`` on the
source's pixel scale, and scales them itself, so a served request and a
training batch go through exactly the same preprocessing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class NetSpec:
    """Everything needed to rebuild a network from its saved weights."""

    kind: str
    in_channels: int
    height: int
    width: int
    num_classes: int
    conv_width: int
    hidden: int
    dropout: float
    pixel_max: float

    def to_dict(self) -> dict:
        return asdict(self)


class SmallCNN(nn.Module):
    """Two 3x3 conv layers, one 2x2 max-pool, a dense layer and the classifier."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        self.spec = spec
        c = spec.conv_width
        self.register_buffer("scale", torch.tensor(1.0 / spec.pixel_max), persistent=False)
        self.features = nn.Sequential(
            nn.Conv2d(spec.in_channels, c, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, 2 * c, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        flat = 2 * c * (spec.height // 2) * (spec.width // 2)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(spec.dropout),
            nn.Linear(flat, spec.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(spec.dropout),
            nn.Linear(spec.hidden, spec.num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # (N, H, W): single-channel images
            x = x.unsqueeze(1)
        return self.classifier(self.features(x * self.scale))


class Probabilities(nn.Module):
    """Wraps a logits network so that its output is class probabilities: the served form."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=-1)


def build_net(spec: NetSpec) -> nn.Module:
    if spec.kind == "cnn":
        return SmallCNN(spec)
    raise ValueError(f"train.model: unknown architecture {spec.kind!r}")


def save_net(net: nn.Module, spec: NetSpec, path) -> None:
    torch.save({"spec": spec.to_dict(), "state_dict": net.state_dict()}, path)


def load_net(path) -> tuple[nn.Module, NetSpec]:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    spec = NetSpec(**blob["spec"])
    net = build_net(spec)
    net.load_state_dict(blob["state_dict"])
    return net.eval(), spec
