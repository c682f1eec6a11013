"""The subword tokenizer of a text data set: WordPiece, trained here.

Nothing is downloaded: the vocabulary is learnt from the training split's texts
(Hugging Face ``tokenizers``), so a model never meets a token its tokenizer was not
fitted on, and the saved ``tokenizer.json`` travels with the model it served. Every
encoding is ``[CLS] text [SEP]``, padded with ``[PAD]`` (id 0) or truncated to
``max_length``; ``default_max_length`` reads that length off the training split's
token counts, so padding is not paid for the few longest texts. Training is not
bit-reproducible: ``tokenizers`` breaks ties between equally frequent merges at the
vocabulary's cut-off in hash order (a second training on the same texts shared 98% or
more of its tokens, in another id order), which is one more reason the tokenizer file,
not the recipe, is what is versioned with a model.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from components.core.rawdata import RawData

if TYPE_CHECKING:  # types only
    from components.core.config import TextSource

log = logging.getLogger(__name__)

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL = (PAD, UNK, CLS, SEP, MASK)  # ids 0..4, in this order, in every vocabulary
LENGTH_QUANTILE = 0.99  # default max_length: this share of training texts fits uncut
MAX_LENGTH_CAP = 512
FILE = "tokenizer.json"  # beside the splits, in a text model's BentoML model folder ...
ARTIFACT_FOLDER = "tokenizer"  # ... and in this folder of every run that logs a text model


def train_tokenizer(texts: Sequence[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """A WordPiece tokenizer (lower-cased, accents stripped, BERT's pre-tokenizer) of at
    most ``vocab_size`` tokens, learnt from ``texts``."""
    if vocab_size < len(SPECIAL) + 100:
        raise ValueError(f"vocab_size {vocab_size}: at least {len(SPECIAL) + 100} tokens")
    tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL),
        show_progress=False,
    )  # fmt: skip
    tokenizer.train_from_iterator((str(t) for t in texts), trainer=trainer, length=len(texts))
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}", special_tokens=[(CLS, tokenizer.token_to_id(CLS)),
                                                  (SEP, tokenizer.token_to_id(SEP))],
    )  # fmt: skip
    return tokenizer


def token_counts(tokenizer: Tokenizer, texts: Sequence[str]) -> np.ndarray:
    """Tokens per text, ``[CLS]`` and ``[SEP]`` included, nothing cut (the tokenizer's
    padding and truncation as they were after)."""
    padding, truncation = tokenizer.padding, tokenizer.truncation
    tokenizer.no_truncation()
    tokenizer.no_padding()
    try:
        return np.asarray([len(e.ids) for e in tokenizer.encode_batch(list(texts))], np.int64)
    finally:
        if padding:
            tokenizer.enable_padding(**padding)
        if truncation:
            tokenizer.enable_truncation(**truncation)


def default_max_length(counts: np.ndarray) -> int:
    """The token count that ``LENGTH_QUANTILE`` of the texts fit in, within 8..512."""
    if len(counts) == 0:
        return 8
    return int(np.clip(np.ceil(np.quantile(counts, LENGTH_QUANTILE)), 8, MAX_LENGTH_CAP))


def pad_token(tokenizer: Tokenizer) -> tuple[str, int]:
    """The padding token and its id: as the tokenizer pads, else its [PAD] or <pad>."""
    if tokenizer.padding:
        return tokenizer.padding["pad_token"], int(tokenizer.padding["pad_id"])
    for token in (PAD, "<pad>"):
        if tokenizer.token_to_id(token) is not None:
            return token, int(tokenizer.token_to_id(token))
    return PAD, 0


def special_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """The pad and unknown tokens' ids: ours are 0 and 1; a pretrained tokenizer's are its
    own (BERT's [UNK] is 100), read from its padding and its model."""
    if hasattr(tokenizer.model, "unk_token"):  # WordPiece, BPE: asked directly
        unk = tokenizer.model.unk_token or UNK
    else:  # from its saved form (15 ms for a 30,000-token vocabulary: not per request)
        unk = json.loads(tokenizer.to_str()).get("model", {}).get("unk_token") or UNK
    unk_id = tokenizer.token_to_id(unk)
    return {"pad_id": pad_token(tokenizer)[1], "unk_id": -1 if unk_id is None else int(unk_id)}


def encode(tokenizer: Tokenizer, texts: Sequence[str], max_length: int):
    """Token ids (N x ``max_length``, int32, the pad id after the text: ``[PAD]`` = 0 for
    ours) and each text's share of unknown tokens among its own (for the monitor)."""
    ids_of = special_ids(tokenizer)
    found = encodings(tokenizer, texts, max_length, ids_of["pad_id"])
    ids = np.asarray([e.ids for e in found], dtype=np.int32).reshape(len(found), max_length)
    return ids, unknown_share(ids, **ids_of)


def encodings(tokenizer: Tokenizer, texts: Sequence[str], max_length: int, pad_id=None) -> list:
    """Each text's ``tokenizers.Encoding`` as ``encode`` reads it (cut or padded to
    ``max_length``): its ids, and the word and characters each token came from."""
    pad_id = special_ids(tokenizer)["pad_id"] if pad_id is None else pad_id
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token(tokenizer)[0], length=max_length)
    return tokenizer.encode_batch(list(texts))


def trimmed(ids: np.ndarray, pad_id: int) -> np.ndarray:
    """``ids`` without the padding columns after the longest row's last token: a text
    model masks padding, so it answers the same (int8 within its rounding), in less time
    for short texts. Rows are padded on the right (``encode``)."""
    used = (np.asarray(ids) != pad_id).any(axis=0)
    longest = len(used) - int(np.argmax(used[::-1])) if used.any() else 1
    return ids[:, :longest]


def unknown_share(ids: np.ndarray, pad_id: int = 0, unk_id: int = 1) -> np.ndarray:
    """Each row's share of unknown tokens among its own (padding, [CLS] and [SEP] aside);
    the ids are our tokenizer's unless given (``special_ids``, meta.json's "text")."""
    words = np.maximum((ids != pad_id).sum(axis=1) - 2, 1)
    return (ids == unk_id).sum(axis=1) / words


def save(tokenizer: Tokenizer, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return path


def load(path: Path) -> Tokenizer:
    return Tokenizer.from_file(str(path))


def saved_length(tokenizer: Tokenizer) -> int:
    """The ``max_length`` a tokenizer was saved with (prepare saves it after encoding): the
    length of the token ids the models trained with it read."""
    if not tokenizer.truncation:
        raise ValueError("this tokenizer was saved without its max_length (no truncation)")
    return int(tokenizer.truncation["max_length"])


@dataclass(frozen=True)
class Encoded:
    ids: np.ndarray  # N x max_length, int32
    unknown: np.ndarray  # each text's share of [UNK] tokens
    info: dict  # meta.json's "text" entry


def texts_digest(texts, vocab_size: int) -> str:
    digest = hashlib.sha256(str(vocab_size).encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def tokenize(raw: RawData, train_idx: np.ndarray, cfg: TextSource, out_dir: Path,
             previous: dict | None, given: tuple[Path, int] | None = None) -> Encoded:  # fmt: skip
    """Learn the tokenizer on the training texts (``train_idx``) and encode every text into
    token ids (int32, N x ``max_length``, [PAD] = 0); save it beside the splits as
    ``tokenizer.json``, whence the package stage puts it in the Bento.

    Its training is not bit-reproducible, so a saved tokenizer is reused while the
    training texts and the vocabulary size are those it was learnt from (``previous``:
    meta.json's "text" entry): the same data keeps the same ids, and the same version.

    ``given`` (a pretrained model's ``tokenizer.json`` and its input limit): that tokenizer
    is used as it is, nothing learnt, and ``max_length`` stays within the limit."""
    texts = raw.frame[raw.text_column].astype(str).tolist()
    train_texts = [texts[i] for i in train_idx]
    digest = texts_digest(train_texts, cfg.vocab_size)
    file = out_dir / FILE
    limit = MAX_LENGTH_CAP
    if given is not None:
        tokenizer, limit = load(given[0]), given[1]
        digest = f"pretrained:{given[0]}"  # nothing learnt: the file is the tokenizer
        log.info(f"  tokenizer: the pretrained model's own ({given[0]}), up to {limit} tokens")
    elif previous and previous.get("train_sha256") == digest and file.is_file():
        tokenizer = load(file)
        log.info(f"  tokenizer: reusing {file.name} (same training texts)")
    else:
        tokenizer = train_tokenizer(train_texts, cfg.vocab_size)
    ids_of = special_ids(tokenizer)
    counts = token_counts(tokenizer, train_texts)
    auto = cfg.max_length == "auto"
    max_length = min(default_max_length(counts) if auto else cfg.max_length, limit)
    ids, unknown = encode(tokenizer, texts, max_length)
    save(tokenizer, file)  # with its truncation and padding: the length the model reads
    cut = float(np.mean(counts > max_length)) if len(counts) else 0.0
    info = {
        "column": raw.text_column,
        "label": raw.label_column,
        "tokenizer": FILE,
        "vocab_size": tokenizer.get_vocab_size(),
        "max_length": int(max_length),
        "train_sha256": digest,
        "train_cut_share": cut,  # training texts longer than max_length (their tail is cut)
        "train_tokens_p50": float(np.median(counts)) if len(counts) else 0.0,
        **ids_of,  # the pad and unknown tokens' ids (the monitor's unknown share)
        "pretrained": str(given[0]) if given is not None else None,
    }
    log.info(
        f"  tokenizer: {info['vocab_size']} WordPiece tokens; max_length {max_length}"
        f" ({100 * cut:.1f}% of training texts cut); unknown-token share"
        f" {float(unknown[train_idx].mean()):.4f} on train"
    )
    return Encoded(ids, unknown, info)
