"""Per-text statistics: what the data gate checks, the monitor tests for drift, and the
service logs for every text it answers (length, words, the share of non-letters, digits
and capitals among a text's characters). One definition for all three."""

from __future__ import annotations

import numpy as np

# The statistics, in order (``text_statistics`` returns these columns)
TEXT_STATISTICS = ("chars", "words", "non_letter", "digits", "upper")


def text_statistics(texts) -> dict[str, np.ndarray]:
    """``TEXT_STATISTICS`` of each text (a pandas Series of strings, or any sequence)."""
    import pandas as pd

    texts = pd.Series(texts, dtype=object).fillna("").astype(str)
    visible = texts.str.count(r"\S").clip(lower=1)
    letters = texts.str.count(r"[^\W\d_]")
    return {
        "chars": texts.str.len().to_numpy(np.int64),
        "words": texts.str.split().str.len().fillna(0).to_numpy(np.int64),
        "non_letter": (1 - letters / visible).clip(lower=0).to_numpy(np.float64),
        "digits": (texts.str.count(r"\d") / visible).to_numpy(np.float64),
        "upper": (texts.str.count(r"[A-Z]") / letters.clip(lower=1)).to_numpy(np.float64),
    }
