"""Gradient-boosted trees for tables: scikit-learn's ``HistGradientBoostingClassifier`` (or
``HistGradientBoostingRegressor`` for a regression) with its default settings, on the same
prepared split as the network (a numeric gap stays NaN: the trees route it natively;
categories arrive one-hot)."""

from __future__ import annotations

from components.train.baselines.base import TARGET_TRUSTED, Baseline, fitted, regressor_for

TREE_NODES = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"


def make(seed: int, task=None, meta: dict | None = None):
    # heavy: imported when one is fitted
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    if task is not None and task.outputs_values:
        return regressor_for(HistGradientBoostingRegressor(random_state=seed), meta or {})
    return HistGradientBoostingClassifier(random_state=seed)


TREES = Baseline(
    name="trees", what="gradient-boosted trees", reads=("tabular",), make=make,
    trusted=(TREE_NODES, *TARGET_TRUSTED),
    described=lambda model: {f"trees.{k}": v for k, v in fitted(model).get_params().items()},
    measured=lambda model: {"trees.iterations": float(fitted(model).n_iter_)},
    explainer="tree-shap", tasks=("classification", "regression"),
)  # fmt: skip
