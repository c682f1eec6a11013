"""The text data set's WordPiece tokenizer (issue 20, part 2), learnt on SMS messages here."""

import numpy as np
import pandas as pd
import pytest

from components.core.kinds.tokenizer import (
    SPECIAL,
    default_max_length,
    encode,
    load,
    save,
    token_counts,
    train_tokenizer,
)
from tests.helpers import SHARED_DATA

SMS = SHARED_DATA / "sms_spam" / "sms_spam.csv"
pytestmark = pytest.mark.skipif(not SMS.is_file(), reason=f"{SMS} is absent (shared data)")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    frame = pd.read_csv(SMS, dtype=str, keep_default_na=False).drop_duplicates("text")
    return frame["text"].tolist()


def test_the_vocabulary_is_learnt_from_the_texts_with_fixed_special_ids(texts):
    tokenizer = train_tokenizer(texts[:4000], vocab_size=3000)
    assert 1000 < tokenizer.get_vocab_size() <= 3000
    assert [tokenizer.token_to_id(t) for t in SPECIAL] == [0, 1, 2, 3, 4]
    # `tokenizers` breaks ties at the vocabulary's cut-off in hash order: a second training
    # on the same texts shares nearly every token, not every id (so the tokenizer is saved)
    again = set(train_tokenizer(texts[:4000], vocab_size=3000).get_vocab())
    assert len(again & set(tokenizer.get_vocab())) >= 0.98 * len(again)
    pieces = tokenizer.encode("Congratulations! You have WON a free prize").tokens
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]" and "free" in pieces


def test_encodings_are_padded_cut_and_count_unknown_tokens(texts, tmp_path):
    tokenizer = train_tokenizer(texts[:4000], vocab_size=3000)
    counts = token_counts(tokenizer, texts[:4000])
    length = default_max_length(counts)
    assert (counts <= length).mean() >= 0.99 and 16 <= length <= 512
    sample = ["ok", "", "call " * 1000, "\u4f60\u597d \u2603 \u2603"]
    ids, unknown = encode(tokenizer, sample, length)
    assert ids.shape == (4, length) and ids.dtype == np.int32
    assert ids[1].tolist()[:3] == [2, 3, 0]  # an empty text: [CLS] [SEP], then padding
    assert ids[2, -1] == 3 and (ids[2] > 0).all()  # cut to max_length, [SEP] kept
    assert unknown[3] == 1.0 and unknown[0] == 0.0  # characters never seen: all [UNK]
    path = save(tokenizer, tmp_path / "tokenizer.json")
    again, _ = encode(load(path), sample, length)
    assert np.array_equal(again, ids)
    with pytest.raises(ValueError, match="at least"):
        train_tokenizer(texts[:10], vocab_size=50)
