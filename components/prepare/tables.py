"""Tables for the network: gaps handled as each column's rule declares, categories one-hot,
numbers as given (the network standardises them itself, ``models.MLP``).

``encode_table`` fits on the training split's rows and returns the schema that the service
encodes a request's rows with (``package.inputs.encode_rows``), so training and serving
read a row the same way; ``drop_missing`` leaves out the rows a ``drop`` rule removes.
"""

from __future__ import annotations

import numpy as np

from components.core.rawdata import DataError, RawData


def drop_missing(raw: RawData):
    """Leave out the rows missing a value in a column whose rule is ``drop``.

    Returns the rows left out, each with its reason (for ``dropped_rows.parquet``,
    where the gate still counts them), or None when the rules drop nothing.
    """
    import pandas as pd

    frame = raw.frame
    columns = [c for c, rule in raw.missing.items() if rule["policy"] == "drop"]
    if not columns:
        return None
    gaps = frame[columns].isna()
    mask = gaps.any(axis=1).to_numpy()
    reasons = pd.Series("", index=frame.index[mask], dtype=object)
    for col in columns:
        reasons[gaps.loc[mask, col]] += f"{col} missing (drop); "
    dropped = frame[mask].assign(_reason=reasons.str.rstrip("; ").to_numpy())
    raw.frame = frame[~mask].reset_index(drop=True)
    raw.labels = raw.labels[~mask]
    if raw.held_out:
        raw.held_out -= int(mask[-raw.held_out :].sum())
    return dropped.reset_index(drop=True)


def _fill_value(column, rule: dict, numeric: bool):
    """The value an ``impute`` rule puts in the column's gaps, from the training rows."""
    import pandas as pd

    how, name = rule["impute"], column.name
    if how == "constant":
        if not numeric:
            return str(rule["value"])
        try:
            return float(rule["value"])
        except (TypeError, ValueError):
            raise DataError(
                f"data.tabular.missing: {name} is numeric; its constant {rule['value']!r} is"
                " not a number"
            ) from None
    if how == "median" and not numeric:
        raise DataError(f"data.tabular.missing: {name} is categorical; impute most_frequent")
    present = column.dropna()
    if present.empty:
        raise DataError(f"column {name!r} has no value in the training rows to impute from")
    if not numeric:  # most frequent; ties to the first in sorted order, for reproducibility
        counts = present.astype(str).value_counts()
        return min(counts[counts == counts.max()].index)
    values = pd.to_numeric(present, errors="coerce").dropna()
    return float(values.median() if how in ("auto", "median") else values.mode().min())


def encode_table(raw: RawData, train_idx: np.ndarray) -> tuple[np.ndarray, dict]:
    """Numeric columns as float32; categorical ones one-hot over the train split's categories.

    A numeric gap stays NaN in the arrays: the network fills it from ``feature_fill``
    (imputation inside the logged model) and gradient-boosted trees route it natively.
    A categorical gap under ``impute`` becomes its fill category before encoding.
    """
    import pandas as pd

    frame = raw.frame
    blocks, names, fill, fills = [], [], [], {}
    for col in raw.numeric:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float32)
        rule = raw.missing.get(col)
        value = 0.0
        if rule and rule["policy"] == "impute":
            value = fills[col] = _fill_value(frame[col].iloc[train_idx], rule, numeric=True)
        blocks.append(values[:, None])
        names.append(col)
        fill.append(value)
    categories = {}
    for col in raw.categorical:
        values = frame[col].astype(str).where(frame[col].notna(), None)
        rule = raw.missing.get(col)
        if rule and rule["policy"] == "impute":
            fills[col] = _fill_value(values.iloc[train_idx], rule, numeric=False)
            values = values.fillna(fills[col])
        values = values.fillna("nan")  # no rule to fill it: the gate refuses the gap
        cats = sorted(values.iloc[train_idx].unique().tolist())
        categories[col] = cats
        codes = pd.Categorical(values, categories=cats).codes
        onehot = np.zeros((len(frame), len(cats)), np.float32)
        onehot[codes >= 0, codes[codes >= 0]] = 1.0
        blocks.append(onehot)
        names += [f"{col}={c}" for c in cats]
        fill += [0.0] * len(cats)
    x = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(frame), 0), np.float32)
    schema = {
        "label": raw.label_column,
        "numeric": raw.numeric,
        "categorical": categories,
        "encoded": names,
        "missing": raw.missing,  # each column's rule: what the gate and the service accept
        "fill": fills,  # column -> imputed value
        "feature_fill": fill,  # per encoded feature: what the network puts in a NaN
    }
    return x, schema
