"""The suites the gate runs besides each data kind's own (``DataKind.expectations``)."""

from __future__ import annotations

from components.core.config import ValidateConfig


def class_expectations(cfg: ValidateConfig):
    """Every class holds at least ``validate.min_class_share`` of each split."""
    import great_expectations as gx

    share = gx.expectations.ExpectColumnValuesToBeBetween
    return [share(column="share", min_value=cfg.min_class_share)]


def label_expectations(cfg: ValidateConfig, reference: dict | None, label: str | None):
    """A regression's labels: each a finite number, within ``validate.ranges`` for it or the
    reference's range widened by ``validate.range_margin`` (a labeller's 1e308 is no new
    extreme of honest data)."""
    import great_expectations as gx

    from components.core.kinds.table_checks import label_bounds

    E = gx.expectations
    out = [E.ExpectColumnValuesToNotBeNull(column="value")]
    bounds = label_bounds(label, cfg, reference)
    if bounds:
        out.append(E.ExpectColumnValuesToBeBetween(column="value", min_value=bounds[0],
                                                   max_value=bounds[1]))  # fmt: skip
    return out
