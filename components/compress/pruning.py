"""Pruning: global magnitude pruning of weights, structured pruning of whole units, fine-tuning.

Unstructured pruning zeroes the smallest weights across all conv and dense layers
(sparse, same shapes). Structured pruning removes whole conv channels and dense
neurons by their L1 norm and rebuilds the layers smaller, so the network itself
shrinks. Either is followed by a few fine-tuning epochs (masks held during them)
and made permanent.
"""

from __future__ import annotations

import contextlib
import copy
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only
    from components.core.config import TrainConfig
    from components.core.splits import Split


def prunable(net) -> list:
    """The conv and dense layers, in forward order (a chain for the CNN and the MLP)."""
    from torch import nn

    return [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def sparsity(net) -> float:
    """Share of conv and dense weights that are zero."""
    weights = [m.weight.detach() for m in prunable(net)]
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / max(1, sum(w.numel() for w in weights))


def parameter_count(net) -> int:
    return sum(p.numel() for p in net.parameters())


def magnitude_prune(net, amount: float, tune=None, steps: int = 1):
    """Global unstructured L1 pruning of conv and dense weights, made permanent.

    With ``steps`` > 1 the sparsity grows in steps (each removes the same share of the
    weights still left), and ``tune(net)`` (fine-tuning) runs after every step while
    the masks hold, so zeroed weights stay zero: iterative pruning, as in Han et al.
    During fine-tuning each dropout after a pruned layer is scaled to its sparser
    layer, ``p * sqrt(kept share)`` (Han et al.'s rule); the rates are restored after.
    """
    from torch.nn.utils import prune

    pruned = copy.deepcopy(net)
    targets = [(m, "weight") for m in prunable(pruned)]
    if amount > 0:
        total = sum(m.weight.numel() for m, _ in targets)
        for step in range(1, steps + 1):
            goal = round(total * (1 - (1 - amount) ** (step / steps)))  # zeros after this step
            removed = sum(int((m.weight_mask == 0).sum()) for m, _ in targets
                          if hasattr(m, "weight_mask"))  # fmt: skip
            prune.global_unstructured(
                targets, pruning_method=prune.L1Unstructured, amount=goal - removed
            )
            if tune is not None:
                with _dropout_scaled(pruned):
                    tune(pruned)
        for module, name in targets:
            prune.remove(module, name)
    elif tune is not None:
        tune(pruned)
    return pruned.eval()


@contextlib.contextmanager
def _dropout_scaled(net):
    """Each dropout that follows a pruned layer at ``p * sqrt(share of its weights kept)``."""
    from torch import nn

    original, layer = {}, None
    for module in net.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            layer = module
        elif isinstance(module, nn.Dropout) and layer is not None:
            mask = getattr(layer, "weight_mask", None)
            kept = float(mask.mean()) if mask is not None else 1.0
            original[module] = module.p
            module.p = module.p * kept**0.5
    try:
        yield
    finally:
        for module, p in original.items():
            module.p = p


def structured_prune(net, amount: float):
    """Remove ``amount`` of the output units (conv channels, dense neurons) of every layer
    but the last, those of least L1 norm, and the inputs that fed on them.

    Works on chains of conv and dense layers (the CNN, the MLP); a net with branches
    (the ResNet) raises ``ValueError``.
    """
    import torch
    from torch import nn

    if any(type(m).__name__ == "_Block" for m in net.modules()):
        raise ValueError("structured pruning needs a chain of layers; the ResNet has branches")
    small = copy.deepcopy(net).eval()
    layers = prunable(small)
    kept = None  # output units of the previous layer that survive
    for i, layer in enumerate(layers):
        weight, bias = layer.weight.data, layer.bias.data if layer.bias is not None else None
        if kept is not None:
            columns = kept
            previous = layers[i - 1]
            if isinstance(layer, nn.Linear) and isinstance(previous, nn.Conv2d):
                per_channel = layer.in_features // previous.original_out
                columns = (kept[:, None] * per_channel + torch.arange(per_channel)).flatten()
            weight = weight[:, columns]
        layer.original_out = weight.shape[0]
        if i < len(layers) - 1:
            keep = max(1, round(weight.shape[0] * (1 - amount)))
            norms = weight.abs().flatten(1).sum(1)
            kept = norms.topk(keep).indices.sort().values
            weight = weight[kept]
            bias = bias[kept] if bias is not None else None
        else:
            kept = None
        layer.weight = nn.Parameter(weight.clone())
        if bias is not None:
            layer.bias = nn.Parameter(bias.clone())
        if isinstance(layer, nn.Conv2d):
            layer.out_channels, layer.in_channels = weight.shape[0], weight.shape[1]
        else:
            layer.out_features, layer.in_features = weight.shape[0], weight.shape[1]
    for layer in layers:
        del layer.original_out
    return small


def fine_tuner(cfg: TrainConfig, seed: int, train: Split, val: Split,
               objective: str = "classify"):  # fmt: skip
    """``tune(net)``: a few epochs of training on the CPU with ``cfg`` (already shortened),
    by the task's ``objective``.

    The tuned weights are kept only if they score at least as well on the validation
    split as the pruned ones did: fine-tuning a barely-hurt net can make it worse.
    """
    from components.core.predict import torch_predictor
    from components.evaluate.metrics import quality
    from components.train.trainer import train_classifier

    def val_quality(net) -> float:  # accuracy, or minus a regression's RMSE
        return quality(torch_predictor(net.eval())(val.x), val.y)

    def tune(net) -> None:
        net.cpu().eval()
        if cfg.epochs == 0:
            return
        before, state = val_quality(net), copy.deepcopy(net.state_dict())
        train_classifier(net.train(), cfg, seed, train, val, objective)
        net.cpu().eval()
        if val_quality(net) < before:
            net.load_state_dict(state)

    return tune
