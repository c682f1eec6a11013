"""Rows whose features (a text; a table's feature columns) repeat under another label,
settled as ``data.text.conflicts`` / ``data.tabular.conflicts`` declare, for ``prepare``."""

from __future__ import annotations

import logging

import numpy as np

from components.core.rawdata import DataError, RawData
from components.validate.report import conflict_message

log = logging.getLogger(__name__)


def settle_conflicts(raw: RawData, policy: str, key: list[str]):
    """Rows whose ``key`` columns (a text; a table's features) are the same under different
    labels, settled by the declared policy: ``drop`` leaves out every such row,
    ``majority`` keeps the rows of the label most of them give (a tie: all left out);
    ``fail`` raises ``DataError`` naming them; ``keep`` leaves them. Returns the rows left
    out with their reasons (or None) and the mask of the rows kept."""
    import pandas as pd

    frame = raw.frame
    kept = np.ones(len(frame), bool)
    if policy == "keep" or not len(frame):
        return None, kept
    group = pd.util.hash_pandas_object(frame[key], index=False).to_numpy()
    labels = pd.Series(np.asarray(raw.labels).astype(str))
    table = pd.DataFrame({"g": group, "label": labels})
    per_group = table.groupby("g")["label"].transform("nunique").to_numpy()
    clash = per_group > 1
    if not clash.any():
        return None, kept
    setting = "data.text.conflicts" if len(key) == 1 else "data.tabular.conflicts"
    if policy == "fail":
        first = frame[clash].iloc[0]
        shown = (repr(str(first[key[0]])[:60]) if len(key) == 1 else
                 ", ".join(f"{c}={str(first[c])[:40]!r}" for c in key[:4]))  # fmt: skip
        given = sorted(labels[group == group[np.flatnonzero(clash)[0]]].unique())
        raise DataError(conflict_message(len(np.unique(group[clash])), int(clash.sum()), shown,
                                         given, text=len(key) == 1), raw.origin)  # fmt: skip
    reasons = np.full(len(frame), "", dtype=object)
    if policy == "drop":
        kept = ~clash
        same = "text" if len(key) == 1 else "features"
        reasons[clash] = f"the same {same} under another label ({setting}: drop)"
    else:
        votes = table[clash].groupby(["g", "label"]).size().rename("n").reset_index()
        votes = votes.sort_values(["g", "n"], ascending=[True, False])
        top = votes.groupby("g").head(2).groupby("g")["n"].agg(list)
        winner = votes.groupby("g").head(1).set_index("g")["label"]
        tied = {g for g, counts in top.items() if len(counts) > 1 and counts[0] == counts[1]}
        for i in np.flatnonzero(clash):
            g = group[i]
            if g in tied:
                kept[i], reasons[i] = False, f"labels tie ({setting}: majority)"
            elif labels[i] != winner[g]:
                kept[i] = False
                reasons[i] = f"the majority label is {winner[g]!r} ({setting}: majority)"
    dropped = frame[~kept].assign(_reason=reasons[~kept]).reset_index(drop=True)
    raw.frame = frame[kept].reset_index(drop=True)
    raw.labels = np.asarray(raw.labels)[kept]
    if raw.held_out:
        raw.held_out -= int((~kept)[-raw.held_out :].sum())
    log.info(f"  {int((~kept).sum())} rows left out by {setting}: {policy} (dropped_rows.parquet)")
    return dropped, kept


def kept_counts(kept: np.ndarray, n_ref: int, sizes: list[int]) -> tuple[int, list[int]]:
    """The reference data's and each batch's rows that ``kept`` keeps."""
    bounds = np.cumsum([0, n_ref, *sizes])
    n_ref, *sizes = [int(kept[a:b].sum()) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return n_ref, sizes
