"""The baselines as plug-ins: train.baseline: auto takes the data kind's own, a named one
must read the data and learn its task, and each declares what skops must trust to load it
back."""

import pytest

from components.train.baseline import baselines_for
from components.train.baselines import BASELINES
from tests.helpers import small_params


@pytest.mark.parametrize(("kind", "expected"), [("tabular", ["trees", "linear"]),
                                                 ("text", ["tfidf"]), ("image", [])])  # fmt: skip
def test_auto_takes_the_data_kinds_own_baselines(kind, expected):
    assert [b.name for b in baselines_for(small_params(), {"kind": kind})] == expected


def test_named_baselines_must_read_the_data_and_learn_its_task_and_none_is_none():
    with pytest.raises(ValueError, match="train.baseline: tfidf does not fit tabular data"):
        baselines_for(small_params(train={"baseline": ["trees", "tfidf"]}), {"kind": "tabular"})
    with pytest.raises(ValueError, match="train.baseline: tfidf does not learn a regression"):
        baselines_for(small_params(train={"baseline": "tfidf"}),
                      {"kind": "text", "task": "regression"})  # fmt: skip
    assert baselines_for(small_params(train={"baseline": "none"}), {"kind": "text"}) == []
    one = baselines_for(small_params(train={"baseline": "linear"}), {"kind": "tabular"})
    assert [b.name for b in one] == ["linear"]  # one name: a list of one


def test_each_baseline_answers_its_task_and_names_what_skops_trusts():
    import numpy as np

    from components.core.tasks import CLASSIFICATION, REGRESSION

    rng = np.random.default_rng(0)
    x, y = rng.integers(5, 40, (60, 6)).astype(float), np.arange(60) % 2
    for baseline in BASELINES.values():
        model = baseline.make(0, CLASSIFICATION, {}).fit(x, y)
        assert model.predict_proba(x[:3]).shape == (3, 2)
        assert baseline.trusted and all(isinstance(t, str) for t in baseline.trusted)
        assert all(k.startswith(f"{baseline.name}.") for k in baseline.described(model))
        assert all(k.startswith(f"{baseline.name}.") for k in baseline.measured(model))
        if "regression" in baseline.tasks:
            meta = {"target": {"transforms": ["log1p", "standardise"]}}
            value = baseline.make(0, REGRESSION, meta).fit(x, x[:, 0] * 3.0)
            assert value.predict(x[:3]).shape == (3,) and not hasattr(value, "predict_proba")
            assert all(k.startswith(f"{baseline.name}.") for k in baseline.described(value))


def test_the_linear_model_fills_gaps_as_the_schema_declares_and_standardises():
    import numpy as np

    from components.core.tasks import CLASSIFICATION
    from components.train.baselines.linear import DeclaredFill

    x = np.array([[1.0, 0.0], [np.nan, 1.0], [3.0, 0.0], [5.0, 1.0]])
    filled = DeclaredFill([9.0, 0.0]).fit(x).transform(x)
    assert filled[1, 0] == 9.0 and not np.isnan(filled).any()
    assert np.isnan(x[1, 0])  # the input is left as it was
    assert DeclaredFill().fit(x).transform(x)[1, 0] == 3.0  # none declared: the median
    model = BASELINES["linear"].make(0, CLASSIFICATION, {"schema": {"feature_fill": [9.0, 0]}})
    model.fit(np.vstack([x] * 5), np.tile([0, 1, 0, 1], 5))
    assert model[0].fill_.tolist() == [9.0, 0.0] and abs(model[1].mean_[1] - 0.5) < 1e-9
