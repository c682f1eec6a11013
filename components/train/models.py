"""Network architectures. Plain ``torch.nn``: no Lightning, no tracking.

Every network takes its input on the source's own scale and normalises it
itself (images divided by their pixel maximum; table features imputed where
missing (NaN) and standardised with the training split's statistics), so a
served request and a training batch go through exactly the same preprocessing.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from components.core.families import NetSpec, get


class SmallCNN(nn.Module):
    """Two 3x3 conv layers, one 2x2 max-pool, a dense layer and the classifier."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        shape = spec.data.input_shape
        channels, (height, width) = (1, shape) if len(shape) == 2 else (shape[0], shape[1:])
        c = spec.options.width
        self.input_chw = (channels, height, width)
        self.register_buffer("scale", torch.tensor(1.0 / spec.data.pixel_max), persistent=False)
        self.features = nn.Sequential(
            nn.Conv2d(channels, c, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, 2 * c, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        flat = 2 * c * (height // 2) * (width // 2)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(spec.dropout),
            nn.Linear(flat, spec.options.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(spec.dropout),
            nn.Linear(spec.options.hidden, spec.data.num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, H, W) single-channel images or (N, C, H, W); no branch, so FX can trace it
        x = x.reshape(-1, *self.input_chw)
        return self.classifier(self.features(x * self.scale))


class MLP(nn.Module):
    """Dense layers with ReLU and dropout; standardises (or scales) its input first."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        data = spec.data
        n_in = 1
        for d in data.input_shape:
            n_in *= d
        mean = torch.tensor(data.feature_mean or [0.0] * n_in, dtype=torch.float32)
        std = torch.tensor(data.feature_std or [data.pixel_max] * n_in, dtype=torch.float32)
        fill = torch.tensor(data.feature_fill or [0.0] * n_in, dtype=torch.float32)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("inv_std", 1.0 / std.clamp_min(1e-6), persistent=False)
        self.register_buffer("fill", fill, persistent=False)
        layers: list[nn.Module] = [nn.Flatten()]
        for width in spec.options.layers:
            layers += [nn.Linear(n_in, width), nn.ReLU(inplace=True), nn.Dropout(spec.dropout)]
            n_in = width
        layers.append(nn.Linear(n_in, data.num_classes))
        self.layers = nn.Sequential(*layers)
        self.target = TargetScale(data) if data.num_classes == 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        x = torch.where(torch.isnan(x), self.fill, x)  # imputation, as the prepare stage declared
        out = self.layers((x - self.mean) * self.inv_std)
        return out if self.target is None else self.target(out)


class TargetScale(nn.Module):
    """A regression net's last step: its output, learnt on the declared target scale
    (``DataSpec.target_*``), back in the label's units; ``scaled`` goes the other way (what
    the loss compares: ``objectives.Regress``)."""

    def __init__(self, data) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(float(data.target_shift)), persistent=False)
        self.register_buffer("scale", torch.tensor(float(data.target_scale)), persistent=False)
        self.log1p = bool(data.target_log1p)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = z * self.scale + self.shift
        return torch.expm1(y) if self.log1p else y

    def scaled(self, y: torch.Tensor) -> torch.Tensor:
        return ((torch.log1p(y) if self.log1p else y) - self.shift) / self.scale


class _Block(nn.Module):
    """A basic residual block: two 3x3 convs with batch norm, and a projected shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """A ResNet-style net: ``len(blocks)`` stages, width doubling and stride 2 per stage."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        shape = spec.data.input_shape
        channels = 1 if len(shape) == 2 else shape[0]
        self.input_chw = (channels, *shape[-2:])
        width = spec.options.width
        self.register_buffer("scale", torch.tensor(1.0 / spec.data.pixel_max), persistent=False)
        layers: list[nn.Module] = [
            nn.Conv2d(channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        c_in = width
        for stage, blocks in enumerate(spec.options.blocks):
            c_out = width * 2**stage
            for i in range(blocks):
                layers.append(_Block(c_in, c_out, stride=2 if stage > 0 and i == 0 else 1))
                c_in = c_out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(spec.dropout),
            nn.Linear(c_in, spec.data.num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, *self.input_chw)
        return self.classifier(self.features(x * self.scale))


class EncoderBlock(nn.Module):
    """A pre-LN Transformer encoder block: LayerNorm, multi-head self-attention over the
    real tokens (padding masked), residual; LayerNorm, a GELU feed-forward of 4x the
    width, residual. Plain ``nn.Linear`` layers throughout, so dynamic int8 and ONNX
    export see every one of them."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.heads, self.p = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.ff = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(4 * width, width))  # fmt: skip
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        n, length, width = h.shape
        qkv = self.qkv(self.norm1(h)).reshape(n, length, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (N, heads, L, width / heads)
        attended = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=keep[:, None, None, :], dropout_p=self.p if self.training else 0.0
        )  # fmt: skip
        h = h + self.drop(self.out(attended.transpose(1, 2).reshape(n, length, width)))
        return h + self.drop(self.ff(self.norm2(h)))


class TextEncoder(nn.Module):
    """A small BERT-style encoder: token and learnt position embeddings, ``depth`` pre-LN
    blocks, a final LayerNorm, [CLS] or mean pooling and a classification head. Takes
    token ids (N x L, L up to ``max_length``; [PAD] = 0, floats of whole numbers too, as
    the predictors send them). ``token_logits`` is the masked-language-model head, its
    weights tied to the token embedding (BERT's pre-training)."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        (max_length,) = spec.data.input_shape
        shape, vocab = spec.options, spec.data.vocab_size
        width = shape.width
        self.pooling = shape.pooling
        self.tokens = nn.Embedding(vocab, width, padding_idx=0)
        self.positions = nn.Embedding(max_length, width)
        self.drop = nn.Dropout(spec.dropout)
        self.blocks = nn.ModuleList(
            EncoderBlock(width, shape.heads, spec.dropout) for _ in range(shape.depth)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Sequential(nn.Dropout(spec.dropout),
                                  nn.Linear(width, spec.data.num_classes))  # fmt: skip
        self.mlm_bias = nn.Parameter(torch.zeros(vocab))
        # BERT's initialisation: small embeddings, so the tied MLM head starts near uniform
        for table in (self.tokens, self.positions):
            nn.init.normal_(table.weight, std=0.02)
        with torch.no_grad():
            self.tokens.weight[0].zero_()  # [PAD]

    def states(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each token's final state (N x L x width), and which tokens are real (N x L)."""
        ids = x.long()
        keep = ids != 0
        where = torch.arange(ids.shape[1], device=ids.device)
        h = self.drop(self.tokens(ids) + self.positions(where)[None])
        for block in self.blocks:
            h = block(h, keep)
        return self.norm(h), keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, keep = self.states(x)
        if self.pooling == "mean":
            weights = keep.unsqueeze(-1).to(h.dtype)
            pooled = (h * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        else:
            pooled = h[:, 0]
        return self.head(pooled)

    def token_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits at every position (N x L x vocab): the MLM head."""
        h, _ = self.states(x)
        return h @ self.tokens.weight.T + self.mlm_bias


class Probabilities(nn.Module):
    """Wraps a logits network so that its output is class probabilities (a regression net's
    one value stays as it is): the served form."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        # one output per input: a regression's value (a trace keeps the branch taken)
        return out if self._width(out) == 1 else torch.softmax(out, dim=-1)

    @staticmethod
    def _width(out: torch.Tensor) -> int:
        if not torch.jit.is_tracing():
            return out.shape[-1]
        import warnings

        with warnings.catch_warnings():  # the width is the net's, the same for every input
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return int(out.shape[-1])


def build_net(spec: NetSpec, weights_follow: bool = False) -> nn.Module:
    """The network of ``spec``, as its family builds it (``components.core.families``);
    ``weights_follow``: its architecture alone (``Family.blank``), for a state dict loaded
    next, so a pretrained family does not read its weights file for nothing."""
    family = get(spec.family)
    return (family.blank if weights_follow and family.blank else family.build)(spec)


def save_net(net: nn.Module, spec: NetSpec, path) -> None:
    torch.save({"spec": spec.to_dict(), "state_dict": net.state_dict()}, path)


def load_net(path, carried: Path | None = None) -> tuple[nn.Module, NetSpec]:
    """The network saved at ``path``; ``carried``: the folder its family packed what it
    builds from into (``carry``: a Bento's), used instead of the training machine's."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    spec = NetSpec.from_dict(blob["spec"])
    family = get(spec.family)
    if carried is not None and family.unpack is not None:
        spec = family.unpack(spec, Path(carried))
    net = build_net(spec, weights_follow=True)
    net.load_state_dict(blob["state_dict"])
    return net.eval(), spec


def carry(weights: Path, folder: Path) -> None:
    """Pack into ``folder`` what the network saved at ``weights`` is built from besides its
    weights (``Family.pack``), so that ``load_net(..., carried=folder)`` needs nothing else."""
    blob = torch.load(weights, map_location="cpu", weights_only=True)
    spec = NetSpec.from_dict(blob["spec"])
    family = get(spec.family)
    if family.pack is not None:
        family.pack(spec, Path(folder))
