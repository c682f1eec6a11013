"""Classification: the label is one of a set of classes, learnt with cross-entropy
(``objectives.classify``), scored by accuracy, macro F1, ROC AUC, PR AUC and log loss, and
answered as a class with one probability per class."""

from __future__ import annotations

import numpy as np

from components.core.messages import short
from components.core.tasks.base import Task


class Classification(Task):
    name = "classification"
    objective = "classify"
    metrics = ("test_accuracy", "test_macro_f1", "test_roc_auc", "test_pr_auc", "test_log_loss")
    lower_is_better = frozenset({"test_log_loss", "test_ece"})
    default_metric = "test_accuracy"

    def answers(self, outputs: np.ndarray, classes: list) -> tuple[list, np.ndarray]:
        """Each input's class (the likeliest) and its probability."""
        return [classes[i] for i in outputs.argmax(1).tolist()], outputs.max(1)

    def targets(self, labels: np.ndarray) -> tuple[np.ndarray, list]:
        """Class indices into the sorted distinct labels: ints stay ints (the digits),
        anything else strings."""
        values = np.unique(labels)
        if np.issubdtype(values.dtype, np.integer):
            classes = [int(v) for v in values]
        else:
            classes = [str(v) for v in values]
        index = {c: i for i, c in enumerate(classes)}
        return np.asarray([index[c] for c in np.asarray(labels).tolist()], dtype=np.int64), classes

    def check_feedback(self, labels: list, classes: list, label_range: list | None = None) -> list:
        """Labels of the model's own class type and among its classes (``True`` is no 1)."""
        kinds = {type(c) for c in classes}
        wrong = [v for v in labels if type(v) not in kinds or v not in classes]
        if wrong:
            types = "/".join(sorted(k.__name__ for k in kinds))
            raise ValueError(f"labels {short(wrong)} are not among the classes {short(classes)}"
                             f" (of type {types})")  # fmt: skip
        return labels


CLASSIFICATION = Classification()
