"""The expectation suites, from ``validate:`` in ``params.yaml`` and the reference profile."""

from __future__ import annotations

from components.core.config import ValidateConfig
from components.core.text import TEXT_STATISTICS
from components.validate.tables import (
    IMAGE_COLUMNS,
    TEXT_DRIFTING,
    GateInput,
    looks_numeric,
)

NUMERIC_TYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float16", "float32", "float64"]  # fmt: skip


# ---------------------------------------------------------------- the suites


def _widen(low: float, high: float, share: float) -> tuple[float, float]:
    """The range widened by ``share`` of its span (validate.range_margin) on each side."""
    margin = share * max(high - low, abs(high), 1e-9)
    return low - margin, high + margin


def numeric_columns(gate: GateInput, reference: dict | None) -> set[str]:
    """Columns held to numbers: the reference's (or the read's), plus near-numeric text ones."""
    t = gate.table
    numeric = set(reference["numeric"]) if reference else set(gate.numeric)
    return numeric | {c for c in gate.categorical if c in t.columns and looks_numeric(t[c])}


def column_bounds(
    col: str, cfg: ValidateConfig, reference: dict | None
) -> tuple[float, float] | None:
    """A numeric column's allowed range: explicit in params, else the widened profile range."""
    if col in cfg.ranges:
        return cfg.ranges[col]
    if reference and col in reference["numeric"]:
        return _widen(*reference["numeric"][col], cfg.range_margin)
    return None


def mean_band(stat: dict, rows: int, shift: float) -> tuple[float, float]:
    """Where a batch's mean may lie: the reference mean, give or take 4 standard errors of
    a batch of ``rows`` and ``shift`` reference standard deviations (or ``shift`` of the
    mean, for texts' statistics: ``max_text_shift``)."""
    margin = 4 * stat["std"] / max(rows, 1) ** 0.5 + shift
    return stat["mean"] - margin, stat["mean"] + margin


def pixel_max_of(gate: GateInput, cfg: ValidateConfig) -> float:
    return cfg.pixel_max if cfg.pixel_max is not None else gate.pixel_max


def expected_labels(cfg: ValidateConfig, reference: dict | None) -> list[str] | None:
    if cfg.allowed_labels:
        return [str(v) for v in cfg.allowed_labels]
    return [str(v) for v in reference["labels"]] if reference else None


def image_expectations(gate: GateInput, cfg: ValidateConfig, reference: dict | None):
    import great_expectations as gx

    E = gx.expectations
    exps = [
        E.ExpectTableColumnsToMatchSet(column_set=IMAGE_COLUMNS, exact_match=True),
        E.ExpectTableRowCountToBeBetween(min_value=cfg.min_rows),
        E.ExpectColumnUniqueValueCountToBeBetween(column="label", min_value=2),
        E.ExpectColumnValuesToBeInSet(column="finite", value_set=[True]),
        E.ExpectColumnValuesToBeBetween(column="min", min_value=cfg.pixel_min),
        E.ExpectColumnValuesToBeBetween(column="max", max_value=pixel_max_of(gate, cfg)),
        E.ExpectColumnProportionOfUniqueValuesToBeBetween(
            column="digest", min_value=1.0 - cfg.max_duplicate_share
        ),
        *(E.ExpectColumnValuesToNotBeNull(column=c) for c in ("mean", "std", "min", "max")),
    ]
    if reference:
        shape = reference["image"]
        exps += [
            E.ExpectColumnValuesToBeInSet(column=c, value_set=[shape[c]])
            for c in ("height", "width", "channels")
        ]
    labels = expected_labels(cfg, reference)
    if labels:
        exps.append(E.ExpectColumnValuesToBeInSet(column="label", value_set=labels))
    return exps


def table_expectations(gate: GateInput, cfg: ValidateConfig, reference: dict | None):
    import great_expectations as gx

    E = gx.expectations
    t = gate.table
    features = [c for c in t.columns if not c.startswith("_") and c != gate.label_column]
    expected = reference["columns"] if reference else [*features, gate.label_column]
    numeric = numeric_columns(gate, reference)
    exps = [
        E.ExpectTableRowCountToBeBetween(min_value=cfg.min_rows),
        E.ExpectColumnValuesToNotBeNull(column="_label"),
        E.ExpectColumnUniqueValueCountToBeBetween(column="_label", min_value=2),
        E.ExpectColumnValuesToBeInSet(column="_finite", value_set=[True]),
        E.ExpectColumnProportionOfUniqueValuesToBeBetween(
            column="_digest", min_value=1.0 - cfg.max_duplicate_share
        ),
    ]
    helpers = ["_split", "_label", "_finite", "_digest"]
    exact = cfg.extra_columns == "fail"
    exps.append(E.ExpectTableColumnsToMatchSet(column_set=expected + helpers, exact_match=exact))
    for col in (c for c in expected if c in t.columns and c != gate.label_column):
        may_miss = gate.may_miss(col)  # a declared share of empty cells: GX's `mostly`
        if may_miss:
            exps.append(E.ExpectColumnValuesToNotBeNull(column=col, mostly=1.0 - may_miss))
        else:
            exps.append(E.ExpectColumnValuesToNotBeNull(column=col))
        if col not in numeric:
            continue
        exps.append(E.ExpectColumnValuesToBeInTypeList(column=col, type_list=NUMERIC_TYPES))
        bounds = column_bounds(col, cfg, reference)
        if bounds:  # a distribution check: mostly within range (single rows: row_policy)
            low, high = bounds
            exps.append(E.ExpectColumnValuesToBeBetween(column=col, min_value=low, max_value=high,
                                                        mostly=cfg.range_mostly))  # fmt: skip
        stat = (reference or {}).get("numeric_stats", {}).get(col)
        if stat and len(t) and col not in gate.categorical:
            low, high = mean_band(stat, len(t), cfg.max_mean_shift * stat["std"])
            exps.append(E.ExpectColumnMeanToBeBetween(column=col, min_value=low, max_value=high))
    labels = expected_labels(cfg, reference)
    if labels:
        exps.append(E.ExpectColumnValuesToBeInSet(column="_label", value_set=labels))
    return exps


TEXT_COLUMNS = ["_split", "_label", *TEXT_STATISTICS, "blank", "bad_encoding", "_digest",
                "_conflict", "_text"]  # fmt: skip


def text_expectations(gate: GateInput, cfg: ValidateConfig, reference: dict | None):
    import great_expectations as gx

    E = gx.expectations
    exps = [
        E.ExpectTableColumnsToMatchSet(column_set=TEXT_COLUMNS, exact_match=True),
        E.ExpectTableRowCountToBeBetween(min_value=cfg.min_rows),
        E.ExpectColumnValuesToNotBeNull(column="_label"),
        E.ExpectColumnUniqueValueCountToBeBetween(column="_label", min_value=2),
        E.ExpectColumnValuesToBeInSet(column="blank", value_set=[False]),
        E.ExpectColumnValuesToBeInSet(column="bad_encoding", value_set=[False]),
        E.ExpectColumnValuesToBeBetween(column="chars", max_value=cfg.max_text_chars),
        E.ExpectColumnProportionOfUniqueValuesToBeBetween(
            column="_digest", min_value=1.0 - cfg.max_duplicate_share
        ),
    ]
    if gate.conflicts == "fail":  # else prepare settles them by the declared policy
        exps.append(E.ExpectColumnValuesToBeInSet(column="_conflict", value_set=[False]))
    if reference:
        for col in TEXT_DRIFTING:
            stat = reference["text_stats"][col]
            low, high = mean_band(stat, len(gate.table), cfg.max_text_shift * abs(stat["mean"]))
            exps.append(E.ExpectColumnMeanToBeBetween(column=col, min_value=low, max_value=high))
    labels = expected_labels(cfg, reference)
    if labels:
        exps.append(E.ExpectColumnValuesToBeInSet(column="_label", value_set=labels))
    return exps


def class_expectations(cfg: ValidateConfig):
    import great_expectations as gx

    share = gx.expectations.ExpectColumnValuesToBeBetween
    return [share(column="share", min_value=cfg.min_class_share)]
