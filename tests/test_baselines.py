"""The baselines as plug-ins: train.baseline: auto takes the data kind's own, a named one
must read the data, and each declares what skops must trust to load it back."""

import pytest

from components.train.baseline import baseline_for
from components.train.baselines import BASELINES
from tests.helpers import small_params


@pytest.mark.parametrize(("kind", "expected"), [("tabular", "trees"), ("text", "tfidf"),
                                                 ("image", None)])  # fmt: skip
def test_auto_takes_the_data_kinds_own_baseline(kind, expected):
    chosen = baseline_for(small_params(), {"kind": kind})
    assert (chosen.name if chosen else None) == expected


def test_a_named_baseline_must_read_the_data_and_none_is_none():
    with pytest.raises(ValueError, match="train.baseline: tfidf does not fit tabular data"):
        baseline_for(small_params(train={"baseline": "tfidf"}), {"kind": "tabular"})
    assert baseline_for(small_params(train={"baseline": "none"}), {"kind": "text"}) is None


def test_each_baseline_is_a_probability_model_and_names_what_skops_trusts():
    import numpy as np

    rng = np.random.default_rng(0)
    x, y = rng.integers(5, 40, (60, 6)), np.arange(60) % 2
    for baseline in BASELINES.values():
        model = baseline.make(0).fit(x, y)
        assert model.predict_proba(x[:3]).shape == (3, 2)
        assert baseline.trusted and all(isinstance(t, str) for t in baseline.trusted)
        assert all(k.startswith(f"{baseline.name}.") for k in baseline.described(model))
        assert all(k.startswith(f"{baseline.name}.") for k in baseline.measured(model))
