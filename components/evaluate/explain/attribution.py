"""Attributions of one model's answers, in the model's own input terms.

Three explainers, one per kind of model the loop makes, each ``explain(x, targets)`` ->
``Attribution`` (one score per input value toward the class ``targets`` names):

- ``Gradients``: a network, by Integrated Gradients (Captum) of the class's
  log-probability (smoother along the path than the probability, which saturates: of 200
  SMS test texts, 41 needed 128 or 256 steps for the probability, 22 and none 256 for the
  log-probability, and /explain's p99 at 10/s fell from 429 to 190 ms), from a baseline
  that fits the data kind (``views``): the mean row the net learnt from for tables, a
  blank image, ``[PAD]`` in place of each word for texts (there the path runs through the
  embedding layer's output, Layer Integrated Gradients' way, and a token's score is the
  sum over its embedding). Each answer reports its completeness: how far the scores' sum
  is from f(x) - f(baseline).
- ``TreeShap``: gradient-boosted trees, by SHAP's TreeExplainer (exact, in the trees'
  log-odds).
- ``LinearTerms``: the TF-IDF baseline, by each term's coefficient times its tf-idf
  weight, shared among the tokens that make the term.

torch, captum and shap are imported inside the functions that use them: the service
and the stages import this module without loading them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

# Integrated Gradients' interpolation steps (Gauss-Legendre, Captum's default rule): each
# input starts at DEFAULT_STEPS and doubles, up to MAX_STEPS, while its completeness error
# is over TOLERANCE (tests/test_explain.py, benchmarks/explain.py)
DEFAULT_STEPS = 32
MAX_STEPS = 256
TOLERANCE = 0.05
# The change f(x) - f(baseline) below which completeness is judged in absolute terms
# (a log-probability that barely moves has nothing to spread: its relative error is noise)
SMALL_CHANGE = 0.01


@dataclass(frozen=True)
class Attribution:
    """Scores in the model's input terms (N x the input's shape), the class each input's
    scores are toward, and, for Integrated Gradients, each input's completeness error:
    ``|sum(scores) - (f(x) - f(baseline))| / max(|f(x) - f(baseline)|, SMALL_CHANGE)``."""

    scores: np.ndarray
    targets: np.ndarray
    method: str
    error: np.ndarray | None = None
    change: np.ndarray | None = None  # f(x) - f(baseline), per input
    steps: np.ndarray | None = None  # the interpolation steps each input's scores took


# ---------------------------------------------------------------- networks


def input_embedding(net):
    """The layer that turns a text network's token ids into vectors: a Hugging Face model's
    own (``get_input_embeddings``), else the first ``nn.Embedding`` in it (None: none)."""
    from torch import nn

    for module in net.modules():
        if module is not net and hasattr(module, "get_input_embeddings"):
            found = module.get_input_embeddings()
            if isinstance(found, nn.Embedding):
                return found
    return next((m for m in net.modules() if isinstance(m, nn.Embedding)), None)


class Gradients:
    """Integrated Gradients of a torch network's class log-probability (``net``: logits).

    ``baseline(x)`` gives the reference input for a batch (same shape). For token ids
    (``tokens``: the ids a word is replaced by, and the ids kept as they are), the path
    runs through the embedding layer's output and each token's score is summed over its
    vector."""

    method = "integrated-gradients"

    def __init__(self, net, baseline, steps: int = DEFAULT_STEPS, embedding=None,
                 batch: int = 256, max_steps: int = MAX_STEPS) -> None:  # fmt: skip
        self.net = net.eval()
        self.baseline = baseline
        self.steps, self.max_steps = steps, max(max_steps, steps)
        self.embedding = embedding  # texts: the layer whose output the path runs through
        self.batch = batch  # interpolated inputs per forward pass

    def _log_probability(self, x):
        """The class log-probabilities; a regression net's one value as it is."""
        import torch

        out = self.net(x)
        return out if out.shape[-1] == 1 else torch.log_softmax(out, dim=-1)

    def _through_embedding(self, vectors, ids):
        """The log-probabilities with the embedding layer's output replaced by ``vectors`` (cut
        to the width the net embeds: a net that runs a batch only as long as its longest
        text cuts the padding after it, and Captum's chunks of the path differ in that)."""
        handle = self.embedding.register_forward_hook(
            lambda module, args, out: vectors[:, : out.shape[1]]
        )
        try:
            return self._log_probability(ids)
        finally:
            handle.remove()

    def explain(self, x: np.ndarray, targets: np.ndarray) -> Attribution:
        """Attributions at ``steps``; the inputs whose completeness error is over
        ``TOLERANCE`` again at twice the steps, up to ``MAX_STEPS`` (a steep path needs
        more: a table net's 95th percentile was 11% at 32 steps, 2.7% at 128)."""
        targets = np.asarray(targets, dtype=np.int64)
        found = self._at(x, targets, self.steps)
        scores, error, change = found
        steps = np.full(len(targets), self.steps)
        while (error > TOLERANCE).any() and steps.max() < self.max_steps:
            again = np.flatnonzero(error > TOLERANCE)
            more = min(int(steps[again[0]]) * 2, self.max_steps)
            scores[again], error[again], change[again] = self._at(x[again], targets[again], more)
            steps[again] = more
        return Attribution(scores, targets, self.method, error, change, steps)

    def _at(self, x: np.ndarray, targets: np.ndarray, steps: int):
        import torch
        from captum.attr import IntegratedGradients  # heavy: only where a net is explained

        base = self.baseline(x)
        with torch.enable_grad():
            if self.embedding is None:
                inputs = torch.as_tensor(np.asarray(x, np.float32))
                reference = torch.as_tensor(np.asarray(base, np.float32))
                ig, extra = IntegratedGradients(self._log_probability), None
            else:
                ids = torch.as_tensor(np.asarray(x, np.int64))
                with torch.no_grad():
                    inputs = self.embedding(ids)
                    reference = self.embedding(torch.as_tensor(np.asarray(base, np.int64)))
                ig, extra = IntegratedGradients(self._through_embedding), (ids,)
            scores, delta = ig.attribute(
                inputs, baselines=reference, target=torch.as_tensor(targets),
                additional_forward_args=extra, n_steps=steps,
                internal_batch_size=max(self.batch, len(targets)), return_convergence_delta=True,
            )  # fmt: skip
        scores = scores.detach().numpy().astype(np.float64)
        delta = delta.detach().numpy().astype(np.float64)
        # Captum's delta is sum(scores) - (f(x) - f(baseline)), from its own forward passes
        # at both ends: the change follows from it, with no third and fourth pass here
        change = scores.reshape(len(scores), -1).sum(1) - delta
        if self.embedding is not None:
            scores = scores.sum(-1)  # a token's score: the sum over its vector
        error = np.abs(delta) / np.maximum(np.abs(change), SMALL_CHANGE)
        return scores, error, change


# ---------------------------------------------------------------- trees


class TreeShap:
    """SHAP values of scikit-learn's gradient-boosted trees (their log-odds), per input
    column, toward each input's target class."""

    method = "tree-shap"

    def __init__(self, model) -> None:
        import shap  # heavy (numba, ~2 s): only where trees are explained

        self.model = model
        # a regressor's values (inside a log1p target: on the log scale it learnt)
        self.values = not hasattr(model, "predict_proba")
        self.explainer = shap.TreeExplainer(getattr(model, "regressor_", model))

    def explain(self, x: np.ndarray, targets: np.ndarray) -> Attribution:
        targets = np.asarray(targets, dtype=np.int64)
        values = np.asarray(self.explainer.shap_values(np.asarray(x, np.float64)))
        if self.values:  # a regression: toward its value
            scores = values
        elif values.ndim == 2:  # two classes: one log-odds, toward class 1
            scores = values * np.where(targets == 1, 1.0, -1.0)[:, None]
        else:  # N x columns x classes
            scores = values[np.arange(len(targets)), :, targets]
        return Attribution(scores.astype(np.float64), targets, self.method)


# ---------------------------------------------------------------- TF-IDF


def _positions(row: np.ndarray, tokens: list[str]) -> list[int]:
    """Where in ``row`` each of ``tokens`` (ids as words, a subsequence of the row in its
    order, markers and padding left out) stands."""
    out, k = [], 0
    for j, token in enumerate(row.tolist()):
        if k < len(tokens) and str(token) == tokens[k]:
            out.append(j)
            k += 1
    return out


class LinearTerms:
    """The TF-IDF baseline's answer, per token: each term's coefficient times its tf-idf
    weight toward the target class, shared equally among the tokens (of the input's ids)
    that make it; a token's score is what it brought to the decision function."""

    method = "coefficient-x-tfidf"

    def __init__(self, pipeline) -> None:
        """``pipeline``: ids as words (its first step), TF-IDF, logistic regression."""
        self.words, self.vectorizer, self.classifier = pipeline[0], pipeline[1], pipeline[2]
        self.terms = self.vectorizer.get_feature_names_out()

    def _weights(self, target: int) -> np.ndarray:
        coef = self.classifier.coef_
        if coef.shape[0] == 1:  # two classes: the decision function is class 1's
            return coef[0] if target == 1 else -coef[0]
        return coef[target]

    def explain(self, x: np.ndarray, targets: np.ndarray) -> Attribution:
        ids = np.asarray(x).astype(np.int64)
        targets = np.asarray(targets, dtype=np.int64)
        texts = self.words.transform(ids)  # the ids it reads as words, in order
        tfidf = self.vectorizer.transform(texts).tocsr()
        scores = np.zeros(ids.shape, np.float64)
        for i, row in enumerate(ids):
            tokens = texts[i].split()
            where = _positions(row, tokens)
            grams = [(j,) for j in range(len(tokens))]
            grams += [(j, j + 1) for j in range(len(tokens) - 1)]
            made = Counter(" ".join(tokens[k] for k in g) for g in grams)
            weights = self._weights(int(targets[i]))
            line = tfidf.getrow(i)
            contribution = {self.terms[c]: weights[c] * v
                            for c, v in zip(line.indices, line.data, strict=True)}  # fmt: skip
            for gram in grams:
                term = " ".join(tokens[k] for k in gram)
                share = contribution.get(term, 0.0) / made[term] / len(gram)
                for k in gram:
                    scores[i, where[k]] += share
        return Attribution(scores, targets, self.method)


class LinearValues:
    """The linear baseline's answer for a table row: each encoded column's coefficient times
    its standardised value (the training split's mean is 0 there), toward the target class
    (a regression: its value; inside a log1p target, on the log scale). The scores add up
    to the decision function less its value at the mean row: exact, no sampling."""

    method = "coefficient-x-value"

    def __init__(self, model) -> None:
        pipeline = getattr(model, "regressor_", model)
        self.encode, self.linear = pipeline[:-1], pipeline[-1]

    def explain(self, x: np.ndarray, targets: np.ndarray) -> Attribution:
        targets = np.asarray(targets, dtype=np.int64)
        z = self.encode.transform(np.asarray(x, np.float64))
        coef = np.atleast_2d(self.linear.coef_)
        if coef.shape[0] == 1:  # two classes (class 1's function), or a regression's value
            sign = np.ones(len(targets)) if not hasattr(self.linear, "classes_") else np.where(
                targets == 1, 1.0, -1.0)  # fmt: skip
            scores = z * coef[0] * sign[:, None]
        else:
            scores = z * coef[targets]
        return Attribution(scores.astype(np.float64), targets, self.method)


# What a baseline names as its explainer (``train.baselines.Baseline.explainer``)
METHODS = {TreeShap.method: TreeShap, LinearTerms.method: LinearTerms,
           LinearValues.method: LinearValues}  # fmt: skip
