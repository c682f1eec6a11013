"""A pretrained Hugging Face encoder with a linear head, as one network of token ids.

``forward(ids)`` takes what every text family takes (int64 token ids, padded with the
tokenizer's own pad id), makes the attention mask from them, pools the encoder's last
states (their mean over real tokens, or the first token's) and returns logits: so the
loop's training, ONNX export, int8 and serving treat it as any other text network.
Imported only where such a net is built (transformers, torch).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from components.core.families import NetSpec
from components.core.pretrained import LAYER, Pretrained

log = logging.getLogger(__name__)


def traced() -> bool:
    """Whether the net runs to be recorded as a graph (ONNX, TorchScript, torch.export),
    which must hold for every batch: no cache, no cut to this batch's longest text."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


class PretrainedTextClassifier(nn.Module):
    def __init__(self, spec: NetSpec, found: Pretrained, weights: bool = True) -> None:
        """``weights``: the pretrained ones (else the architecture alone, from its config,
        for saved weights loaded next); ``spec.options.layers`` keeps the lowest layers."""
        from transformers import AutoConfig, AutoModel  # heavy: where a pretrained net is built
        from transformers.utils import logging as hf_logging

        super().__init__()
        hf_logging.set_verbosity_error()  # "some weights were not used": the head is ours
        remote = spec.options.trust_remote_code
        config = AutoConfig.from_pretrained(found.folder, trust_remote_code=remote)
        if spec.options.layers:  # a half-depth student; BERT's name, DistilBERT's
            key = "num_hidden_layers" if hasattr(config, "num_hidden_layers") else "n_layers"
            setattr(config, key, spec.options.layers)
        if weights:
            self.encoder = AutoModel.from_pretrained(found.folder, config=config,
                                                     use_safetensors=found.safetensors,
                                                     trust_remote_code=remote)  # fmt: skip
        else:
            self.encoder = AutoModel.from_config(config, trust_remote_code=remote)
        self.pad_id = int(config.pad_token_id if config.pad_token_id is not None else 0)
        self.mean = spec.options.pooling == "mean"
        self.dropout = nn.Dropout(spec.dropout)
        self.head = nn.Linear(config.hidden_size, spec.data.num_classes)
        # train.finetune: frozen: each text's pooled encoding, computed once (the encoder
        # does not change), so that every epoch after the first trains the head alone
        self.cache: dict[bytes, torch.Tensor] | None = None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.cache is not None:  # a frozen encoder is a fixed feature extractor
            self.encoder.eval()
        return self

    def head_parameters(self):
        return self.head.parameters()

    def fix_body(self, fixed: bool = True) -> None:
        """train.finetune: frozen: the encoder is a fixed feature extractor, each text's
        encoding computed once (the cache); off again for export and serving."""
        self.cache = {} if fixed else None
        self.train(self.training)

    def body(self) -> nn.Module:
        """The pretrained layers (what layer-wise freezing counts in)."""
        return self.encoder

    def pooled(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != self.pad_id).long()
        if not traced():  # a graph for every batch: ONNX, TorchScript, torch.export
            # the padding after the batch's longest text changes nothing the head reads
            # (masked from attention, out of the mean): a batch of short texts runs short
            longest = max(int(mask.sum(1).max()), 1)
            ids, mask = ids[:, :longest], mask[:, :longest]
        states = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        if not self.mean:
            return states[:, 0]
        weights = mask.unsqueeze(-1).to(states.dtype)
        return (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        if self.cache is None or traced():
            return self.head(self.dropout(self.pooled(ids)))
        keys = [row.tobytes() for row in ids.cpu().numpy()]
        new = [i for i, k in enumerate(keys) if k not in self.cache]
        if new:
            with torch.no_grad():
                for i, vector in zip(new, self.pooled(ids[new]), strict=True):
                    self.cache[keys[i]] = vector.detach()
        return self.head(self.dropout(torch.stack([self.cache[k] for k in keys])))


class PretrainedImageClassifier(nn.Module):
    """A pretrained image model (``AutoModelForImageClassification``: ViT, ConvNeXt, ResNet
    in Hugging Face's layout) with a fresh head for these classes. Its image processor's
    resizing and normalisation (``preprocessor_config.json``) happen inside the net, so it
    takes the loop's pixels as every image family does (N x H x W or N x C x H x W, up to
    ``pixel_max``; grey repeated to the model's channels) and the ONNX graph carries them:
    the service needs neither transformers nor the processor."""

    token_ids = False  # the hf family's texts are token ids; its images are pixels

    def __init__(self, spec: NetSpec, found: Pretrained, weights: bool = True) -> None:
        from transformers import AutoConfig, AutoModelForImageClassification  # heavy: here
        from transformers.utils import logging as hf_logging

        super().__init__()
        hf_logging.set_verbosity_error()  # "newly initialized: classifier": the head is ours
        remote = spec.options.trust_remote_code
        config = AutoConfig.from_pretrained(found.folder, trust_remote_code=remote,
                                            num_labels=spec.data.num_classes)  # fmt: skip
        if weights:
            self.encoder = AutoModelForImageClassification.from_pretrained(
                found.folder, config=config, use_safetensors=found.safetensors,
                trust_remote_code=remote, ignore_mismatched_sizes=True,
            )  # fmt: skip
            for module in self._head_modules():  # a fresh head, whatever the checkpoint had
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        else:
            made = AutoModelForImageClassification
            self.encoder = made.from_config(config, trust_remote_code=remote)
        mean, std, size = processing(found.folder, config)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.size, self.channels = size, int(getattr(config, "num_channels", 3))
        self.pixel_max = float(spec.data.pixel_max)
        self.fixed = False  # train.finetune: frozen: the body stays in eval

    def _head_modules(self):
        body = {id(m) for m in self.encoder.base_model.modules()}
        return [m for m in self.encoder.modules() if id(m) not in body and m is not self.encoder]

    def head_parameters(self):
        return [p for m in self._head_modules() for p in m.parameters(recurse=False)]

    def body(self) -> nn.Module:
        return self.encoder.base_model

    def fix_body(self, fixed: bool = True) -> None:
        """train.finetune: frozen: the body stays in eval while the head trains."""
        self.fixed = fixed
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.fixed:
            self.body().eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / self.pixel_max
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.shape[1] != self.channels:  # grey to the model's colours (or back)
            x = x.mean(1, keepdim=True).expand(-1, self.channels, -1, -1)
        if tuple(x.shape[-2:]) != self.size:
            x = nn.functional.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return self.encoder(pixel_values=(x - self.mean) / self.std).logits


def processing(folder, config) -> tuple[list[float], list[float], tuple[int, int]]:
    """The image processor's normalisation and size (``preprocessor_config.json``), else
    the model config's image size and a mean and deviation of 0.5."""
    import json

    path = folder / "preprocessor_config.json"
    given = json.loads(path.read_text()) if path.is_file() else {}
    channels = int(getattr(config, "num_channels", 3))
    normalised = given.get("do_normalize", True)
    mean = given.get("image_mean", [0.5] * channels) if normalised else [0.0] * channels
    std = given.get("image_std", [0.5] * channels) if normalised else [1.0] * channels
    size = given.get("size", getattr(config, "image_size", 224))
    if isinstance(size, dict):  # {"height", "width"} or {"shortest_edge"}
        edge = size.get("shortest_edge", 224)
        size = (size.get("height", edge), size.get("width", edge))
    elif isinstance(size, int):
        size = (size, size)
    return [float(v) for v in mean], [float(v) for v in std], (int(size[0]), int(size[1]))


def trainable(net: nn.Module) -> tuple[int, int]:
    """(parameters that train, all parameters)."""
    params = list(net.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def adapted(net, mode: str, options):
    """``net`` ready for train.finetune ``mode``: full (as built), frozen (the encoder's
    weights fixed: the head alone trains) or lora (PEFT's low-rank adapters on
    ``options.lora_targets``, the rest fixed)."""
    head = list(net.head_parameters())
    if mode == "frozen":
        net.encoder.requires_grad_(False)
        net.fix_body()
    elif mode == "lora":
        from peft import LoraConfig, get_peft_model  # only for LoRA

        config = LoraConfig(r=options.lora_r, lora_alpha=options.lora_alpha,
                            lora_dropout=options.lora_dropout,
                            target_modules=list(options.lora_targets))  # fmt: skip
        try:
            net.encoder = get_peft_model(net.encoder, config)
        except ValueError as err:  # no module of that name in this architecture
            raise ValueError(f"train.hf.lora_targets {list(options.lora_targets)}: {err}") from None
    elif mode != "full":
        raise ValueError(f"train.finetune {mode!r}: expected full, frozen or lora")
    elif options.freeze_layers:  # layer-wise freezing: the lowest layers keep their weights
        frozen = fixed_layers(net.body(), options.freeze_layers)
        log.info(f"  fine-tuning: the embeddings and layers 0..{frozen - 1} fixed")
    for param in head:  # the new head always trains
        param.requires_grad_(True)
    trains, total = trainable(net)
    log.info(f"  fine-tuning ({mode}): {trains:,} of {total:,} parameters train"
             f" ({100 * trains / max(total, 1):.2f}%)")  # fmt: skip
    return net


def fixed_layers(encoder: nn.Module, count: int) -> int:
    """Fix ``encoder``'s embeddings and its ``count`` lowest layers; how many were fixed."""
    params = [(name, p, LAYER.match(f"encoder.{name}")) for name, p in encoder.named_parameters()]
    depth = len({int(found[2]) for _, _, found in params if found})
    if count > depth:
        raise ValueError(f"train.hf.freeze_layers {count}: the encoder has {depth} layers")
    for name, param, found in params:
        if "embeddings" in name or (found is not None and int(found[2]) < count):
            param.requires_grad_(False)
    return count


def merged(net):
    """``net`` as it is saved and served: LoRA adapters merged into the encoder's weights
    (the plain architecture again), every weight trainable as built."""
    if hasattr(net.encoder, "merge_and_unload"):
        net.encoder = net.encoder.merge_and_unload()
    net.fix_body(False)  # a served net runs its whole body on every input
    net.requires_grad_(True)
    return net
