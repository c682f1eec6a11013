"""Drift on text descriptors (issue 20, part 7, a building block not yet in the production
monitor), with Evidently: a fresh sample of SMS messages is not flagged, texts from another
source are."""

import numpy as np
import pandas as pd
import pytest

from components.core.config import MonitorConfig
from components.core.kinds.tokenizer import encode, train_tokenizer
from components.monitor.drift import TEXT_FEATURES, check_drift, text_feature_table
from tests.helpers import ADULT, SHARED_DATA

SMS = SHARED_DATA / "sms_spam" / "sms_spam.csv"
pytestmark = pytest.mark.skipif(
    not (SMS.is_file() and (ADULT / "adult_train.csv").is_file()),
    reason="the SMS and Adult files are absent (shared data)",
)


def test_a_change_of_source_is_flagged_and_a_fresh_sample_is_not(tmp_path):
    texts = pd.read_csv(SMS, dtype=str, keep_default_na=False)["text"].drop_duplicates()
    texts = texts.sample(frac=1.0, random_state=42).to_numpy()
    train, fresh = texts[:3000], texts[3000:3300]
    tokenizer = train_tokenizer(train, 4000)

    def table(batch):
        return text_feature_table(batch, encode(tokenizer, batch, 64)[1])

    reference = table(train)
    assert list(reference.columns) == TEXT_FEATURES
    cfg = MonitorConfig()
    same = check_drift(reference, table(fresh), cfg, tmp_path / "fresh.html", "fresh")
    assert not same.drifted, same.column_scores
    census = pd.read_csv(ADULT / "adult_train.csv", nrows=300).astype(str)
    other = census.drop(columns="income").agg(" ".join, axis=1).to_numpy()
    moved = check_drift(reference, table(other), cfg, tmp_path / "census.html", "census")
    assert moved.drifted and {"chars", "non_letter", "digits"} <= set(moved.drifted_columns)
    # the census words split into known word pieces; a script never seen is all unknown
    assert table(other)["unknown"].max() == 0.0
    assert table(["\u4eca\u5929\u89c1", "\u03ba\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1"])[
        "unknown"].tolist() == [1.0, 1.0]  # fmt: skip
    assert (tmp_path / "census.html").stat().st_size > 10_000
    assert np.isfinite(table(["", "   "]).to_numpy(float)).all()  # empty texts: no NaN
