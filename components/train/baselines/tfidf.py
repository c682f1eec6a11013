"""TF-IDF and logistic regression for texts: word 1-2-grams with sublinear term frequencies,
reading the token ids every text model of the loop reads, as words, so the registry, the
gate and the service treat it as they treat the network."""

from __future__ import annotations

import numpy as np

from components.train.baselines.base import Baseline

FIRST_WORD_ID = 5  # [PAD] [UNK] [CLS] [SEP] [MASK] are 0..4: only [UNK] stays a word


def text_pipeline(seed: int, words=None):
    """The model a user would pick for texts: word 1-2-gram TF-IDF (sublinear term
    frequencies) and logistic regression, as scikit-learn gives them. It takes raw texts,
    or with ``words`` (``id_words``) token ids, and answers class probabilities."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    steps = [vectorizer, LogisticRegression(C=10.0, max_iter=2000, random_state=seed)]
    if words is not None:  # ids as words: every non-space run is a token, case kept
        vectorizer.set_params(token_pattern=r"\S+", lowercase=False)
        steps.insert(0, FunctionTransformer(words))
    return make_pipeline(*steps)


def id_words(ids) -> list[str]:
    """Token-id rows (N x L, padded with 0) as space-separated words for ``text_pipeline``:
    every id but padding and the [CLS], [SEP] and [MASK] markers."""
    rows = np.asarray(ids).astype(np.int64)
    return [" ".join(map(str, row[(row >= FIRST_WORD_ID) | (row == 1)])) for row in rows]


def described(model) -> dict[str, object]:
    vectorizer, classifier = model[1], model[2]
    return {"tfidf.ngram_range": vectorizer.ngram_range, "tfidf.words": "token ids",
            "tfidf.sublinear_tf": vectorizer.sublinear_tf, "tfidf.C": classifier.C}  # fmt: skip


TFIDF = Baseline(
    name="tfidf", what="TF-IDF + logistic regression", reads=("text",),
    make=lambda seed, task=None, meta=None: text_pipeline(seed, id_words),
    trusted=("components.train.baselines.tfidf.id_words",), described=described,
    measured=lambda model: {"tfidf.terms": float(len(model[1].vocabulary_))},
    explainer="coefficient-x-tfidf",
)  # fmt: skip
