"""Gradient-boosted trees for tables: scikit-learn's ``HistGradientBoostingClassifier`` with
its default settings, on the same prepared split as the network (a numeric gap stays NaN:
the trees route it natively; categories arrive one-hot)."""

from __future__ import annotations

from components.train.baselines.base import Baseline

TREE_NODES = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"


def make(seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier  # heavy: when one is fitted

    return HistGradientBoostingClassifier(random_state=seed)


TREES = Baseline(
    name="trees", what="gradient-boosted trees", reads=("tabular",), make=make,
    trusted=(TREE_NODES,),
    described=lambda model: {f"trees.{k}": v for k, v in model.get_params().items()},
    measured=lambda model: {"trees.iterations": float(model.n_iter_)},
    explainer="tree-shap",
)  # fmt: skip
