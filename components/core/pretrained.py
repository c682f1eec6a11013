"""A pretrained model's files, found as Hugging Face users expect, and checked before use.

``train.hf.model`` names a local folder (``save_pretrained``'s layout) or a Hub id. A Hub
id is looked up in the Hugging Face cache (``HF_HOME``, ``HF_HUB_CACHE``), and downloaded
only where the Hub is reachable and ``HF_HUB_OFFLINE`` is not set; a model that is neither
cached nor reachable is one line saying how to get it. Weights must be safetensors:
pickled ``.bin`` checkpoints run code when loaded, and are refused unless
``train.hf.trust_pickle`` says otherwise.

Only the standard library at import (``huggingface_hub`` where a Hub id is resolved), so
the CLI and the params check stay fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

SAFE = ("model.safetensors", "model.safetensors.index.json")
PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json")
DEFAULT_LIMIT = 512  # tokens, where neither the tokenizer nor the config says
# A net's key of an encoder layer's weight (its prefix, its number): BERT's and RoBERTa's
# encoder.encoder.layer.3., DistilBERT's encoder.transformer.layer.3.
LAYER = re.compile(r"^(encoder\..*?\blayer\.)(\d+)\.")


class PretrainedError(ValueError):
    """A pretrained model that cannot be used: not found, offline, or pickled weights."""


@dataclass(frozen=True)
class Pretrained:
    """A pretrained model's folder, checked, and what its lineage records."""

    name: str  # as train.hf.model gave it
    folder: Path
    revision: str  # the Hub commit, or "local" for a folder
    weights: Path  # the weights file (the first shard's index for a sharded model)
    safetensors: bool

    @property
    def tokenizer_file(self) -> Path:
        return self.folder / "tokenizer.json"

    def weights_sha256(self) -> str:
        digest = hashlib.sha256()
        with open(self.weights, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
        return digest.hexdigest()

    def license(self) -> str:
        """The licence of its model card (``README.md``'s ``license:``), else "unknown"."""
        card = self.folder / "README.md"
        if card.is_file():
            head = card.read_text(errors="replace").split("---")
            if len(head) > 2:  # YAML front matter: --- ... ---
                found = re.search(r"^license:\s*(\S+)", head[1], re.MULTILINE)
                if found:
                    return found.group(1).strip("'\"")
        return "unknown"

    def max_tokens(self) -> int:
        """The longest input the model reads: the tokenizer's limit, else its config's."""
        limits = []
        for file, key in (("tokenizer_config.json", "model_max_length"),
                          ("config.json", "max_position_embeddings")):  # fmt: skip
            path = self.folder / file
            if path.is_file():
                value = json.loads(path.read_text()).get(key)
                if isinstance(value, int) and 0 < value < 1_000_000:
                    limits.append(value)
        return min(limits) if limits else DEFAULT_LIMIT

    def depth(self) -> int | None:
        """Its encoder's layers (``config.json``: BERT's ``num_hidden_layers``, DistilBERT's
        ``n_layers``), None where the config says neither."""
        path = self.folder / "config.json"
        config = json.loads(path.read_text()) if path.is_file() else {}
        value = config.get("num_hidden_layers", config.get("n_layers"))
        return value if isinstance(value, int) and value > 0 else None

    def lineage(self) -> dict[str, str]:
        """The MLflow tags that say what a model was fine-tuned from."""
        return {
            "mloop.base_model": self.name,
            "mloop.base_revision": self.revision,
            "mloop.base_weights_sha256": self.weights_sha256(),
            "mloop.base_license": self.license(),
        }


def locate(name: str, revision: str | None = None, trust_pickle: bool = False,
           need_weights: bool = True) -> Pretrained:  # fmt: skip
    """The checked files of pretrained model ``name`` (a folder, or a Hub id at ``revision``);
    ``need_weights`` False: its config alone will do (trained weights are loaded next)."""
    if not name:
        raise PretrainedError("train.hf.model is empty: name a Hub id or a local folder")
    folder = Path(name).expanduser()
    if folder.is_dir():
        found, commit = folder, "local"
    elif folder.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise PretrainedError(f"train.hf.model {name!r}: no such folder")
    else:
        found = _from_hub(name, revision, trust_pickle)
        commit = found.name  # snapshots/<commit>
    if not (found / "config.json").is_file():
        raise PretrainedError(
            f"train.hf.model {name!r}: {found} holds no config.json: not"
            " a Hugging Face model folder (save_pretrained writes one)"
        )
    safe = next((found / f for f in SAFE if (found / f).is_file()), None)
    pickled = next((found / f for f in PICKLED if (found / f).is_file()), None)
    if safe is None and pickled is None and not need_weights:
        return Pretrained(name, found, commit, found / SAFE[0], True)
    if safe is None and pickled is None:
        raise PretrainedError(f"train.hf.model {name!r}: no weights in {found} (expected"
                              " model.safetensors)")  # fmt: skip
    if safe is None and not trust_pickle:
        raise PretrainedError(
            f"train.hf.model {name!r}: only pickled weights ({pickled.name}), which run code"
            " when loaded; convert them to safetensors, or set train.hf.trust_pickle: true if"
            " you trust their source"
        )
    return Pretrained(name, found, commit, safe or pickled, safe is not None)


def _from_hub(name: str, revision: str | None, trust_pickle: bool) -> Path:
    """The cached snapshot of Hub model ``name``; downloaded where the Hub is reachable."""
    from huggingface_hub import snapshot_download  # only for a Hub id
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "README.md"]
    patterns += ["*.bin"] if trust_pickle else []  # pickled weights: fetched only if trusted
    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=patterns,
                                      local_files_only=offline))  # fmt: skip
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as err:
        where = "offline (HF_HUB_OFFLINE)" if offline else "and the Hub did not answer"
        raise PretrainedError(
            f"train.hf.model {name!r} is not in the Hugging Face cache, {where}: run"
            f" `huggingface-cli download {name}` where the Hub is reachable (the cache is"
            f" HF_HOME), or point train.hf.model at a local folder ({type(err).__name__})"
        ) from None
