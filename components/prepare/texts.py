"""Texts before encoding (``data.source: text``): exact duplicates are dropped under
``data.text.duplicates: drop`` and kept, with their reason, in ``dropped_rows.parquet``.

The encoding (the WordPiece tokenizer learnt on the training split) is the text kind's:
``components.core.kinds.tokenizer.tokenize``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from components.core.rawdata import RawData

if TYPE_CHECKING:  # types only
    from components.core.config import TextSource


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
