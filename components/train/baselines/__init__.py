"""The baselines as plug-ins: the model a user would pick instead of the network, one
module each (``trees``, ``linear``, ``tfidf``), each a ``Baseline`` (``base.py``);
``train.baseline: auto`` takes the data kind's own (``DataKind.baselines``). Their modules
import scikit-learn only when one is made (``linear``: when it is imported)."""

from __future__ import annotations

from components.train.baselines.base import Baseline
from components.train.baselines.linear import LINEAR
from components.train.baselines.tfidf import TFIDF
from components.train.baselines.trees import TREES

BASELINES: dict[str, Baseline] = {b.name: b for b in (TREES, LINEAR, TFIDF)}
