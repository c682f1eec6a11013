"""Prepare a text data set (``data.source: text``): split, learn the tokenizer, encode.

The texts are split as every data set is (stratified, seeded; the test split is the
frozen one). The WordPiece tokenizer (``tokenizer.py``) is learnt on the training
split only and saved beside the splits as ``tokenizer.json``; every split is then
encoded with it into ``{split}_x.npy`` (int32 token ids, N x ``max_length``, [PAD] = 0)
and kept as read in ``{split}_rows.parquet`` (the text and label columns) for the gate
and the monitor. Exact duplicates are dropped under ``data.text.duplicates: drop`` and
kept, with their reason, in ``dropped_rows.parquet``.

The tokenizer's training is not bit-reproducible (see ``tokenizer.py``), so a saved
tokenizer is reused while the training texts and the vocabulary size are those it was
learnt from: the same data keeps the same ids, and the same data version.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.core.kinds import tokenizer as tok
from components.core.kinds.tokenizer import FILE
from components.core.rawdata import RawData

if TYPE_CHECKING:  # types only
    from components.core.config import TextSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Encoded:
    ids: np.ndarray  # N x max_length, int32
    unknown: np.ndarray  # each text's share of [UNK] tokens
    info: dict  # meta.json's "text" entry


def drop_duplicates(raw: RawData, cfg: TextSource):
    """Under ``duplicates: drop``, leave out every repeat of a (text, label) pair but the
    first (the reference data's rows come first: a batch never displaces them). Returns
    the rows left out with their reason (or None), and which rows were kept."""
    frame = raw.frame
    repeat = frame.duplicated(subset=[cfg.text, cfg.label], keep="first").to_numpy()
    if cfg.duplicates != "drop" or not repeat.any():
        return None, np.ones(len(frame), bool)
    first = frame.groupby([cfg.text, cfg.label], sort=False).ngroup()
    first_row = first.drop_duplicates().reset_index().set_index(0)["index"]
    reasons = [f"exact duplicate of row {int(first_row[g])} (data.text.duplicates: drop; rows"
               " count the reference data, then each batch)"
               for g in first[repeat]]  # fmt: skip
    dropped = frame[repeat].assign(_reason=reasons).reset_index(drop=True)
    raw.frame = frame[~repeat].reset_index(drop=True)
    raw.labels = raw.labels[~repeat]
    return dropped, ~repeat


def texts_digest(texts, vocab_size: int) -> str:
    digest = hashlib.sha256(str(vocab_size).encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def tokenize(raw: RawData, train_idx: np.ndarray, cfg: TextSource, out_dir: Path,
             previous: dict | None) -> Encoded:  # fmt: skip
    """Learn (or reuse) the tokenizer on the training texts and encode every text."""
    texts = raw.frame[raw.text_column].astype(str).tolist()
    train_texts = [texts[i] for i in train_idx]
    digest = texts_digest(train_texts, cfg.vocab_size)
    file = out_dir / FILE
    if previous and previous.get("train_sha256") == digest and file.is_file():
        tokenizer = tok.load(file)
        log.info(f"  tokenizer: reusing {file.name} (same training texts)")
    else:
        tokenizer = tok.train_tokenizer(train_texts, cfg.vocab_size)
    counts = tok.token_counts(tokenizer, train_texts)
    auto = cfg.max_length == "auto"
    max_length = tok.default_max_length(counts) if auto else cfg.max_length
    ids, unknown = tok.encode(tokenizer, texts, max_length)
    tok.save(tokenizer, file)  # with its truncation and padding: the length the model reads
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
    }
    log.info(
        f"  tokenizer: {info['vocab_size']} WordPiece tokens; max_length {max_length}"
        f" ({100 * cut:.1f}% of training texts cut); unknown-token share"
        f" {float(unknown[train_idx].mean()):.4f} on train"
    )
    return Encoded(ids, unknown, info)
