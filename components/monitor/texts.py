"""Drift of texts: each text's descriptors (``drift.TEXT_FEATURES``) and the predicted class.

The service logs the same descriptors for every text it answers (``core.text``), so
the production monitor compares logged traffic with the training texts; the drift
self-test compares simulated batches (``TEXTS.changed``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from components.monitor.drift import text_feature_table


def text_features(texts: list[str], tokenizer, max_length: int, classes: list,
                  predict: Callable[[np.ndarray], np.ndarray] | None = None):  # fmt: skip
    """The drift table of ``texts``: descriptors (the unknown-token share from
    ``tokenizer``) and, with ``predict`` (over token ids), the predicted class name."""
    from components.core.kinds.tokenizer import encode

    ids, unknown = encode(tokenizer, texts, max_length)
    return text_feature_table(texts, unknown, class_names(predict, ids, classes))


def class_names(predict, ids: np.ndarray, classes: list):
    """The predicted class of each row of token ids, by name (as the service logs it)."""
    if predict is None or not len(ids):
        return None
    return np.asarray(classes, dtype=object)[predict(ids).argmax(axis=1)]


def text_reference(ws, meta: dict, predict, kept=None):
    """The drift reference of a text data set: the champion's training texts' descriptors
    (``kept``: the sample of them prepare kept, with their ids; else the prepared train
    split), and the champion's predicted class names for them."""
    import pandas as pd

    from components.core.kinds.tokenizer import unknown_share
    from components.core.splits import load_rows, load_split, reference_texts

    column = meta["text"]["column"]
    if kept is not None and reference_texts(kept).is_file():
        texts = pd.read_parquet(reference_texts(kept))[column].tolist()
        ids = np.load(kept, allow_pickle=False)
    else:
        texts = load_rows(ws.prepared, "train")[column].tolist()
        ids = np.asarray(load_split(ws.prepared, "train").x)
    ids_of = {k: meta["text"][k] for k in ("pad_id", "unk_id") if k in meta["text"]}
    unknown = unknown_share(ids, **ids_of)  # the tokenizer's own ids (ours: 0 and 1)
    return text_feature_table(texts, unknown, class_names(predict, ids, meta["classes"]))
