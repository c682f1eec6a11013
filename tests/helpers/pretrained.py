"""Tiny pretrained models for tests: random weights in Hugging Face's layout, written with
``save_pretrained`` to a folder, as a user's fine-tuned or downloaded model would be. No hub."""

from __future__ import annotations

import json
from pathlib import Path


def tiny_bert(folder: Path, texts: list[str], safetensors: bool = True, layers: int = 2) -> Path:
    """A ``layers``-layer BERT (hidden 32) with a WordPiece tokenizer learnt on ``texts``, its
    ``tokenizer.json``, a tokenizer config that caps inputs at 64 tokens and a model card
    declaring its licence."""
    from transformers import BertConfig, BertModel

    from components.core.kinds.tokenizer import train_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, vocab_size=400)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 64}))
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32,
                        num_hidden_layers=layers, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128, pad_token_id=0)  # fmt: skip
    BertModel(config).save_pretrained(folder, safe_serialization=safetensors)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny random BERT\n")
    return folder


def tiny_vit(folder: Path, labels: int = 3) -> Path:
    """A 2-layer ViT for 16 x 16 colour images (hidden 32, patches of 4) with a head of
    ``labels`` classes, as a checkpoint trained for other classes has, and an image
    processor's config that resizes to 16 x 16 and normalises to [-1, 1]."""
    from transformers import ViTConfig, ViTForImageClassification

    folder.mkdir(parents=True, exist_ok=True)
    config = ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32,
                       num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       num_labels=labels)  # fmt: skip
    ViTForImageClassification(config).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "ViTImageProcessor", "do_resize": True, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5], "size": {"height": 16, "width": 16},
    }))  # fmt: skip
    return folder
