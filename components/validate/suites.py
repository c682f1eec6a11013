"""The suites the gate runs besides each data kind's own (``DataKind.expectations``)."""

from __future__ import annotations

from components.core.config import ValidateConfig


def class_expectations(cfg: ValidateConfig):
    """Every class holds at least ``validate.min_class_share`` of each split."""
    import great_expectations as gx

    share = gx.expectations.ExpectColumnValuesToBeBetween
    return [share(column="share", min_value=cfg.min_class_share)]
