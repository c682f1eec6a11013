"""The task protocol: what is learnt from the label, asked of one object.

A task says what the label is (``targets``: the labels as the numbers a model learns, and
the classes or scale that turn them back), which objective trains a network on it
(``objective``: a name in ``components.train.objectives.OBJECTIVES``), which metrics it
reports and which way each one improves (the gate reads one: ``register.metric``), and
what a served answer and a production label look like (``check_feedback``). A prepared data
set records its task in ``meta.json`` (``task_of(meta)``); classification is the one task
(``classification.py``) and regression (``regression.py``) are two modules beside each other,
not a round of if/else.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np


class Task:
    name: ClassVar[str]  # what meta.json records
    objective: ClassVar[str]  # the objective that trains a network on it (train/objectives.py)
    metrics: ClassVar[tuple[str, ...]]  # what register.metric may name
    lower_is_better: ClassVar[frozenset[str]]  # of its metrics, those where less wins
    default_metric: ClassVar[str]  # what register.metric: auto reads
    outputs_values: ClassVar[bool] = False  # a model answers values, not class probabilities

    def targets(self, labels: np.ndarray) -> tuple[np.ndarray, list]:
        """The labels as a model learns them, and what turns its output back (classes)."""
        raise NotImplementedError

    def outputs(self, classes: list) -> int:
        """How many numbers a network of this task answers per input."""
        return len(classes)

    def answers(self, outputs: np.ndarray, classes: list) -> tuple[list, np.ndarray]:
        """What the service answers and logs of a batch of outputs: each input's answer
        (a class, a value) and its confidence."""
        raise NotImplementedError

    def metric_for(self, setting: str) -> str:
        """``register.metric`` as this task reads it: ``auto`` is its default; a metric of
        another task stops with the ones it has."""
        metric = self.default_metric if setting == "auto" else setting
        if metric not in self.metrics:
            raise ValueError(f"register.metric {setting} is no {self.name} metric; use auto or"
                             f" one of {', '.join(self.metrics)}")  # fmt: skip
        return metric

    def better(self, metric: str, challenger: float, champion: float, margin: float = 0.0) -> bool:
        """Whether ``challenger`` beats ``champion`` on ``metric`` by more than ``margin``."""
        gain = champion - challenger if metric in self.lower_is_better else challenger - champion
        return gain > margin

    def direction(self, metric: str) -> str:
        """What a verdict adds after a score of ``metric``: how it improves, where not up."""
        return " (lower is better)" if metric in self.lower_is_better else ""

    def check_feedback(self, labels: list, classes: list, label_range: list | None = None) -> list:
        """Production labels for a logged request, checked against what the model answers
        (``label_range``: the values the data gate takes, where the task has values);
        ValueError names what is wrong (the service answers 400)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<task {self.name}>"
