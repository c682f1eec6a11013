"""The linear model for tables, what an experienced engineer tries first on a small table:
logistic regression (classification) or ridge regression (regression) on the same
encoding as the network: the declared imputation (``data.tabular.missing``: the prepared
split keeps a gap as NaN, the schema names what fills it), numeric columns standardised on
the training split, categories one-hot (as prepared)."""

from __future__ import annotations

import numpy as np

from components.train.baselines.base import TARGET_TRUSTED, Baseline, fitted, regressor_for

try:  # scikit-learn is imported when the module is: only where a baseline is made or loaded
    from sklearn.base import BaseEstimator, TransformerMixin
except ImportError:  # pragma: no cover (the GPU machine has scikit-learn; a bare one not)
    BaseEstimator = TransformerMixin = object


class DeclaredFill(TransformerMixin, BaseEstimator):
    """A gap (NaN) in column j becomes ``fill[j]``: what the schema declares, as the network
    fills it (no fill declared: the training split's median)."""

    def __init__(self, fill=None) -> None:
        self.fill = fill

    def fit(self, x, y=None):
        x = np.asarray(x, dtype=np.float64)
        if self.fill is not None and len(self.fill) == x.shape[1]:
            self.fill_ = np.asarray(self.fill, dtype=np.float64)
        else:
            with np.errstate(all="ignore"):
                self.fill_ = np.nan_to_num(np.nanmedian(x, axis=0)) if len(x) else np.zeros(
                    x.shape[1])  # fmt: skip
        self.n_features_in_ = x.shape[1]
        return self

    def transform(self, x):
        x = np.array(x, dtype=np.float64)
        gaps = np.isnan(x)
        x[gaps] = np.broadcast_to(self.fill_, x.shape)[gaps]
        return x


def make(seed: int, task=None, meta: dict | None = None):
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fill = ((meta or {}).get("schema") or {}).get("feature_fill") or None
    steps = [DeclaredFill(fill), StandardScaler()]
    if task is not None and task.outputs_values:
        return regressor_for(make_pipeline(*steps, Ridge(alpha=1.0)), meta or {})
    return make_pipeline(*steps, LogisticRegression(C=1.0, max_iter=5000, random_state=seed))


def described(model) -> dict[str, object]:
    last = fitted(model)[-1]
    settings = {f"linear.{k}": getattr(last, k) for k in ("C", "alpha") if hasattr(last, k)}
    return {"linear.model": type(last).__name__, **settings}


LINEAR = Baseline(
    name="linear", what="a linear model (logistic or ridge regression)", reads=("tabular",),
    make=make, trusted=("components.train.baselines.linear.DeclaredFill", *TARGET_TRUSTED),
    described=described,
    measured=lambda model: {"linear.iterations": float(np.max(getattr(fitted(model)[-1],
                                                                      "n_iter_", 0)) or 0)},
    explainer="coefficient-x-value", tasks=("classification", "regression"),
)  # fmt: skip
