"""Tasks as plug-ins: what the label is, which way each metric improves (the gate reads the
data's task), and what a production label must be."""

from types import SimpleNamespace

import numpy as np
import pytest

from components.core.tasks import CLASSIFICATION, REGRESSION, Task, task, task_of
from components.core.tasks.regression import regression_scores
from components.register.gate import decide


def test_classification_learns_class_indices_and_keeps_the_labels_type():
    y, classes = CLASSIFICATION.targets(np.array([3, 1, 3, 2]))
    assert classes == [1, 2, 3] and type(classes[0]) is int
    assert y.tolist() == [2, 0, 2, 1] and y.dtype == np.int64
    y, classes = CLASSIFICATION.targets(np.array(["spam", "ham", "spam"], dtype=object))
    assert classes == ["ham", "spam"] and y.tolist() == [1, 0, 1]


def test_a_data_set_names_its_task_and_one_from_before_tasks_is_a_classification():
    assert task_of({"task": "classification"}) is CLASSIFICATION
    assert task_of({}) is CLASSIFICATION
    assert task("regression") is REGRESSION
    with pytest.raises(
        ValueError, match="unknown task 'ranking'; known: \\['classification', 'regression'\\]"
    ):
        task("ranking")


def test_production_labels_are_checked_by_the_task():
    assert CLASSIFICATION.check_feedback([1, 2], [0, 1, 2]) == [1, 2]
    with pytest.raises(ValueError, match=r"labels \[True\] are not among the classes"):
        CLASSIFICATION.check_feedback([True], [0, 1])  # True is no 1
    with pytest.raises(ValueError, match="of type str"):
        CLASSIFICATION.check_feedback(["eggs"], ["ham", "spam"])


class Errors(Task):
    """A task of the test's own whose metric falls as the model improves."""

    name, objective = "errors", "classify"
    metrics, lower_is_better = ("test_error",), frozenset({"test_error"})


def test_the_gate_reads_which_way_the_tasks_metric_improves():
    cfg = SimpleNamespace(metric="test_error", min_improvement=0.0, max_regression=0.01,
                          max_latency_p95_ms=None, max_size_mb=None)  # fmt: skip
    lower = decide(0.10, 0.20, cfg, champion_version="1", task=Errors())
    assert lower.promote and "(lower is better)" in lower.reason
    assert not decide(0.30, 0.20, cfg, champion_version="1", task=Errors()).promote
    cfg.metric = "test_accuracy"
    assert decide(0.30, 0.20, cfg, champion_version="1").promote  # classification: higher wins


def test_a_regression_learns_values_and_is_scored_by_rmse_mae_r2_and_mape():
    y, classes = REGRESSION.targets(np.array(["1.5", "2", "10"]))
    assert classes == [] and y.dtype == np.float64 and y.tolist() == [1.5, 2.0, 10.0]
    with pytest.raises(ValueError, match=r"finite number: 2 are not \(rows \[1, 2\]"):
        REGRESSION.targets(np.array(["1", "nan", "inf"]))
    scores = regression_scores(np.array([1.0, 2.0, 4.0]), np.array([[1.0], [3.0], [4.0]]))
    assert scores.rmse == pytest.approx(np.sqrt(1 / 3)) and scores.mae == pytest.approx(1 / 3)
    assert scores.r2 == pytest.approx(1 - 1 / (14 / 3)) and scores.mape == pytest.approx(1 / 6)
    assert set(scores.summary()) == {"test_rmse", "test_mae", "test_r2", "test_mape"}
    zero = regression_scores(np.array([0.0, 2.0]), np.array([0.5, 2.0]))
    assert "test_mape" not in zero.summary()  # a true value of 0: no share of it
    with pytest.raises(ValueError, match="MAPE needs every true value positive"):
        zero.metric("test_mape")


def test_register_metric_auto_is_the_tasks_own_and_another_tasks_metric_stops():
    assert CLASSIFICATION.metric_for("auto") == "test_accuracy"
    assert REGRESSION.metric_for("auto") == "test_rmse"
    with pytest.raises(ValueError, match="register.metric test_accuracy is no regression metric"):
        REGRESSION.metric_for("test_accuracy")
    assert REGRESSION.better("test_rmse", 50.0, 52.0) and not REGRESSION.better("test_r2", 0.4, 0.5)


def test_a_regressions_production_labels_are_finite_numbers():
    assert REGRESSION.check_feedback([1, 2.5], []) == [1.0, 2.5]
    for bad in (["3"], [True], [float("nan")], [None]):
        with pytest.raises(ValueError, match="not finite numbers: this model predicts a value"):
            REGRESSION.check_feedback(bad, [])
    values, confidence = REGRESSION.answers(np.array([[2.5], [-1.0]]), [])
    assert values == [2.5, -1.0] and confidence.tolist() == [0.0, 0.0]


def test_the_best_on_validation_is_the_challenger_and_a_tie_goes_to_the_simpler_model():
    from components.register.stage import Candidate, challenger_of

    def made(family: str, val: float) -> Candidate:
        return Candidate(family, "trained", "run", "uri", {}, val, 1.0, 1.0)

    tied = [made("mlp", 0.97), made("trees", 0.95), made("linear", 0.97)]
    assert challenger_of(tied, CLASSIFICATION, "test_accuracy").family == "linear"
    better = [made("mlp", 0.98), made("trees", 0.95), made("linear", 0.97)]
    assert challenger_of(better, CLASSIFICATION, "test_accuracy").family == "mlp"
    rmse = [made("mlp", 50.0), made("trees", 50.0), made("linear", 51.0)]
    assert challenger_of(rmse, REGRESSION, "test_rmse").family == "trees"
