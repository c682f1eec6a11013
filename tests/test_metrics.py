"""Evaluation scores against scikit-learn's functions, on binary, skewed and multi-class data."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from components.core.tasks import CLASSIFICATION
from components.evaluate.metrics import calibration, plot_calibration, score

better = CLASSIFICATION.better


def _proba(rng, y, classes, skill):
    """Probabilities that lean towards the true class by ``skill``."""
    logits = rng.normal(size=(len(y), classes))
    logits[np.arange(len(y)), y] += skill
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_binary_scores_are_those_of_the_positive_class():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.24).astype(int)  # skewed, as the census table is
    proba = _proba(rng, y, 2, 1.5)
    s = score(y, proba, ["<=50K", ">50K"])
    assert s.roc_auc == pytest.approx(roc_auc_score(y, proba[:, 1]))
    assert s.pr_auc == pytest.approx(average_precision_score(y, proba[:, 1]))
    assert s.log_loss == pytest.approx(log_loss(y, proba))
    assert 0.5 < s.roc_auc < 1 and s.pr_auc < s.roc_auc  # PR AUC feels the rare class
    assert set(CLASSIFICATION.metrics) <= set(s.summary()) and s.metric("test_pr_auc") == s.pr_auc


def test_multiclass_ranking_scores_are_one_vs_rest_means():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 1000)
    proba = _proba(rng, y, 4, 1.0)
    s = score(y, proba, ["a", "b", "c", "d"])
    assert s.roc_auc == pytest.approx(roc_auc_score(y, proba, multi_class="ovr"))
    expected = np.mean([average_precision_score(y == k, proba[:, k]) for k in range(4)])
    assert s.pr_auc == pytest.approx(expected)


def test_a_split_with_one_class_has_no_auc_and_says_so():
    y = np.zeros(50, dtype=int)
    s = score(y, np.tile([0.9, 0.1], (50, 1)), [0, 1])
    assert s.roc_auc is None and "test_roc_auc" not in s.summary()
    with pytest.raises(ValueError, match="undefined on this test split"):
        s.metric("test_roc_auc")


def test_calibration_error_is_zero_for_a_calibrated_model_and_large_for_an_overconfident_one(
    tmp_path,
):
    rng = np.random.default_rng(2)
    confidence = rng.uniform(0.5, 1.0, 20000)
    y = (rng.random(20000) > confidence).astype(int)  # class 0 is right with p = confidence
    calibrated = np.stack([confidence, 1 - confidence], axis=1)
    assert calibration(y, calibrated)[0] < 0.02
    overconfident = np.stack([np.full(20000, 0.999), np.full(20000, 0.001)], axis=1)
    ece, bins = calibration(y, overconfident)
    assert ece == pytest.approx(0.999 - (y == 0).mean(), abs=1e-9) and len(bins) == 1
    assert plot_calibration(y, calibrated, tmp_path / "c.png").stat().st_size > 1000


def test_better_knows_which_way_each_metric_improves():
    assert better("test_accuracy", 0.9, 0.8) and not better("test_accuracy", 0.8, 0.9)
    assert better("test_log_loss", 0.2, 0.3) and not better("test_log_loss", 0.3, 0.2)
    assert not better("test_roc_auc", 0.905, 0.9, margin=0.01)
