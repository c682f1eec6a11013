"""Tables before encoding: ``drop_missing`` leaves out the rows a ``drop`` rule removes.

The encoding itself (gaps as each column's rule declares, categories one-hot) is the
table kind's, shared with the service: ``components.core.kinds.encoding.TableEncoding``.
"""

from __future__ import annotations

from components.core.rawdata import RawData


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
