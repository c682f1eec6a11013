"""Tasks as plug-ins: ``CLASSIFICATION`` (``classification.py``) and ``REGRESSION``
(``regression.py``), each a ``Task``.

``task(name)`` is the task a prepared data set (``meta["task"]``) or a registered model
names; ``task_of(meta)`` reads it from a data set's ``meta.json`` (one prepared before tasks
were recorded is a classification).
"""

from __future__ import annotations

from components.core.tasks.base import Task
from components.core.tasks.classification import CLASSIFICATION
from components.core.tasks.regression import REGRESSION

TASKS: dict[str, Task] = {t.name: t for t in (CLASSIFICATION, REGRESSION)}


def task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}") from None


def task_of(meta: dict) -> Task:
    """The task of a prepared data set (its ``meta.json``)."""
    return task(meta.get("task", CLASSIFICATION.name))
