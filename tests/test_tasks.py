"""Tasks as plug-ins: what the label is, which way each metric improves (the gate reads the
data's task), and what a production label must be."""

from types import SimpleNamespace

import numpy as np
import pytest

from components.core.tasks import CLASSIFICATION, Task, task, task_of
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
    with pytest.raises(
        ValueError, match="unknown task 'regression'; known: \\['classification'\\]"
    ):
        task("regression")


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
