"""One model's explainer: its attribution method and its data kind's view, together.

``Explainer.explain(inputs, targets)`` answers, per input, its attributions in the user's
terms (``views``) and, for Integrated Gradients, its completeness error. ``for_network``
makes one for a trained network (Integrated Gradients), ``for_baseline`` for a fitted
baseline (its ``Baseline.explainer``: SHAP for trees, coefficient x tf-idf for TF-IDF).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from components.evaluate.explain.attribution import (
    DEFAULT_STEPS,
    MAX_STEPS,
    Attribution,
    Gradients,
    input_embedding,
)
from components.evaluate.explain.views import ImageView, TableView, TextView


@dataclass
class Explainer:
    attributor: object  # attribution.Gradients, TreeShap or LinearTerms
    view: TableView | TextView | ImageView
    fills_gaps: bool = False  # a network: a table's gaps as it fills them

    @property
    def method(self) -> str:
        return self.attributor.method

    def model_inputs(self, inputs):
        """What the model reads of ``inputs`` (encoded rows, texts, pixels), and the texts'
        encodings (else None)."""
        if isinstance(self.view, TextView):
            return self.view.encoded(list(inputs))
        return self.from_split(inputs), None

    def from_split(self, x: np.ndarray) -> np.ndarray:
        """A prepared split's arrays (token ids, encoded rows with gaps, pixels) as the
        explainer reads them: ids cut after the longest text, a network's gaps filled."""
        if isinstance(self.view, TextView):
            return self.view.trimmed(x)
        if isinstance(self.view, TableView) and self.fills_gaps:
            return self.view.inputs(x)
        return np.asarray(x)

    def attribute(self, inputs, targets) -> tuple[Attribution, object]:
        x, found = self.model_inputs(inputs)
        return self.attributor.explain(x, np.asarray(targets)), found

    def explain(self, inputs, targets, rows: list[dict] | None = None) -> tuple[list, list]:
        """Per input: its attributions in the user's terms, and its completeness (None
        where the method is exact by construction)."""
        found, extra = self.attribute(inputs, targets)
        if isinstance(self.view, TextView):
            answers = self.view.answer(list(inputs), extra, found.scores)
        elif isinstance(self.view, TableView):
            answers = self.view.answer(found.scores, rows)
        else:
            answers = self.view.answer(found.scores)
        if found.error is None:
            return answers, [None] * len(answers)
        each = zip(found.error, found.change, found.steps, strict=True)
        return answers, [{"error": round(float(e), 6), "change": round(float(c), 6),
                          "steps": int(s)} for e, c, s in each]  # fmt: skip


def for_network(net, view, steps: int = DEFAULT_STEPS, max_steps: int = MAX_STEPS) -> Explainer:
    """Integrated Gradients of ``net`` (logits) with the view's baseline; texts through
    the embedding layer (ValueError: a text net without one)."""
    embedding = None
    if isinstance(view, TextView):
        embedding = input_embedding(net)
        if embedding is None:
            raise ValueError("this text network has no nn.Embedding to attribute through")
    gradients = Gradients(net, view.baseline, steps, embedding, max_steps=max_steps)
    return Explainer(gradients, view, fills_gaps=isinstance(view, TableView))


def for_baseline(name: str, model, view) -> Explainer:
    """The explainer of a fitted baseline (``train.baselines``) by its name."""
    from components.evaluate.explain.attribution import METHODS
    from components.train.baselines import BASELINES

    method = BASELINES[name].explainer
    if method not in METHODS:
        raise ValueError(f"the {name} baseline declares no explainer ({method!r})")
    return Explainer(METHODS[method](model), view)
