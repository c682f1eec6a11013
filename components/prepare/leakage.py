"""Probable leakage: a feature column that alone reproduces the label on the training split,
or (a regression) a set of numeric columns whose weighted sum does, as a demand table that
ships its target's parts as columns. Found at prepare, named in the data gate's report and
the promotion gate's record with the settings that settle it: ``data.tabular.drop`` (it is
not known when the model is asked) or ``data.tabular.allow_leakage`` (it is, on purpose).
"""

from __future__ import annotations

import numpy as np

ALONE = 0.999  # R² (regression) or accuracy (classification) of one column alone
SAMPLE = 20_000  # training rows the check reads at most
SHARE = 0.01  # of a linear fit, the columns whose part moves the label by this share of its std


def probable_leakage(
    frame,
    numeric: list[str],
    categorical: list[str],
    y: np.ndarray,
    regression: bool,
    allowed: list[str],
    seed: int = 0,
) -> list[dict]:
    """``[{"columns": [...], "score": ..., "how": ...}]``: what reproduces ``y`` (the training
    split's labels, ``frame`` its rows), columns in ``allowed`` left out."""
    import pandas as pd

    if len(frame) > SAMPLE:
        pick = np.sort(np.random.default_rng(seed).permutation(len(frame))[:SAMPLE])
        frame, y = frame.iloc[pick], y[pick]
    frame = frame.reset_index(drop=True)
    found = []
    numbers = {}
    for col in [c for c in numeric if c not in allowed]:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float64)
        numbers[col] = values
        seen = np.isfinite(values)
        if seen.sum() < 10:
            continue
        score = _alone(values[seen], y[seen], regression)
        if score > ALONE:
            found.append(_finding([col], score, regression))
    for col in [c for c in categorical if c not in allowed]:
        values = frame[col].astype(str).to_numpy()
        if len(set(values)) > len(values) / 2:  # nearly a value per row: says nothing here
            continue
        score = _grouped(values, y, regression)
        if score > ALONE:
            found.append(_finding([col], score, regression))
    if regression and len(numbers) > 1 and not found:
        found += _summed(numbers, y)
    return found


def _alone(x: np.ndarray, y: np.ndarray, regression: bool) -> float:
    """R² of a straight line through ``x`` (regression), else the accuracy of the best
    split of ``x`` into as many intervals as there are classes and one more."""
    if regression:
        if np.std(x) == 0 or np.std(y) == 0:
            return 0.0
        return float(np.corrcoef(x, y)[0, 1] ** 2)
    from sklearn.tree import DecisionTreeClassifier

    leaves = 2 * len(np.unique(y)) + 1
    tree = DecisionTreeClassifier(max_leaf_nodes=leaves, random_state=0)
    return float(tree.fit(x.reshape(-1, 1), y).score(x.reshape(-1, 1), y))


def _grouped(values: np.ndarray, y: np.ndarray, regression: bool) -> float:
    """How well each category's own label (its mean; its majority class) gives the label."""
    import pandas as pd

    table = pd.DataFrame({"v": values, "y": y})
    if regression:
        fitted = table.groupby("v")["y"].transform("mean").to_numpy()
        spread = float(((y - y.mean()) ** 2).sum())
        return 1.0 - float(((y - fitted) ** 2).sum()) / spread if spread > 0 else 0.0
    majority = table.groupby("v")["y"].agg(lambda s: s.value_counts().index[0])
    return float((table["v"].map(majority).to_numpy() == y).mean())


def _summed(numbers: dict[str, np.ndarray], y: np.ndarray) -> list[dict]:
    """A least-squares fit of ``y`` on every numeric column (gaps as the median): when it
    reproduces the label, the columns that carry it."""
    names = list(numbers)
    x = np.column_stack([numbers[c] for c in names])
    with np.errstate(all="ignore"):
        median = np.nan_to_num(np.nanmedian(x, axis=0))
    x = np.where(np.isfinite(x), x, median)
    design = np.column_stack([x, np.ones(len(x))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    fitted = design @ coef
    spread = float(((y - y.mean()) ** 2).sum())
    score = 1.0 - float(((y - fitted) ** 2).sum()) / spread if spread > 0 else 0.0
    if score <= ALONE:
        return []
    part = np.abs(coef[:-1]) * x.std(axis=0)
    carried = [c for c, p in zip(names, part, strict=True) if p > SHARE * np.std(y)]
    return [_finding(carried, score, True)] if carried else []


def _finding(columns: list[str], score: float, regression: bool) -> dict:
    measure = "R²" if regression else "accuracy"
    one = len(columns) == 1
    named = ", ".join(map(repr, columns))
    what = (f"column {columns[0]!r} alone reproduces" if one else
            f"columns {named} together (a weighted sum) reproduce")  # fmt: skip
    return {
        "columns": columns,
        "score": round(score, 6),
        "message": (
            f"probable leakage: {what} the label on the training split ({measure}"
            f" {score:.4f}); drop {'it' if one else 'them'} (data.tabular.drop) if not known"
            f" when the model is asked, or declare it intended (data.tabular.allow_leakage:"
            f" {columns})"
        ),
    }
