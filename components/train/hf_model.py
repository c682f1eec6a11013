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
from components.core.pretrained import Pretrained

log = logging.getLogger(__name__)


class PretrainedTextClassifier(nn.Module):
    def __init__(self, spec: NetSpec, found: Pretrained) -> None:
        from transformers import AutoModel  # heavy: only where a pretrained net is built
        from transformers.utils import logging as hf_logging

        super().__init__()
        hf_logging.set_verbosity_error()  # "some weights were not used": the head is ours
        self.encoder = AutoModel.from_pretrained(
            found.folder, use_safetensors=found.safetensors,
            trust_remote_code=spec.options.trust_remote_code,
        )  # fmt: skip
        config = self.encoder.config
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

    def pooled(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != self.pad_id).long()
        states = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        if not self.mean:
            return states[:, 0]
        weights = mask.unsqueeze(-1).to(states.dtype)
        return (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        exporting = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
        if self.cache is None or exporting:
            return self.head(self.dropout(self.pooled(ids)))
        keys = [row.tobytes() for row in ids.cpu().numpy()]
        new = [i for i, k in enumerate(keys) if k not in self.cache]
        if new:
            with torch.no_grad():
                for i, vector in zip(new, self.pooled(ids[new]), strict=True):
                    self.cache[keys[i]] = vector.detach()
        return self.head(self.dropout(torch.stack([self.cache[k] for k in keys])))


def trainable(net: nn.Module) -> tuple[int, int]:
    """(parameters that train, all parameters)."""
    params = list(net.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def adapted(net: PretrainedTextClassifier, mode: str, options) -> PretrainedTextClassifier:
    """``net`` ready for train.finetune ``mode``: full (as built), frozen (the encoder's
    weights fixed: the head alone trains) or lora (PEFT's low-rank adapters on
    ``options.lora_targets``, the rest fixed)."""
    if mode == "frozen":
        net.encoder.requires_grad_(False)
        net.cache = {}  # the encodings, once: the head trains on them
        net.train(net.training)
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
    trains, total = trainable(net)
    log.info(f"  fine-tuning ({mode}): {trains:,} of {total:,} parameters train"
             f" ({100 * trains / max(total, 1):.2f}%)")  # fmt: skip
    return net


def merged(net: PretrainedTextClassifier) -> PretrainedTextClassifier:
    """``net`` as it is saved and served: LoRA adapters merged into the encoder's weights
    (the plain architecture again), every weight trainable as built."""
    if hasattr(net.encoder, "merge_and_unload"):
        net.encoder = net.encoder.merge_and_unload()
    net.cache = None  # a served net encodes every text
    net.requires_grad_(True)
    return net
