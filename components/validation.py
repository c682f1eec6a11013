"""The ``validate`` stage: a Great Expectations suite that gates training.

Images are not validated one column per pixel (slow, and meaningless for
shape-free rules) but through a per-sample statistics table: one row per
image with its split, label, shape, mean, std, min, max, a finiteness flag and
a content digest. A second, per-class table checks class balance.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.config import Params, ValidateConfig
from components.data import SPLITS, load_meta, load_split
from components.paths import Workspace
from components.records import write_json

SAMPLE_COLUMNS = [
    "split", "label", "height", "width", "mean", "std", "min", "max", "finite", "digest",
]  # fmt: skip


@dataclass(frozen=True)
class Failure:
    table: str
    expectation: str
    column: str | None
    unexpected_count: int | None
    observed: object
    examples: list = field(default_factory=list)

    def describe(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        parts = [f"{self.expectation} on {where}"]
        if self.unexpected_count is not None:
            parts.append(f"{self.unexpected_count} unexpected")
        if self.observed is not None:
            parts.append(f"observed {self.observed}")
        if self.examples:
            parts.append(f"e.g. {self.examples[:5]}")
        return ": ".join(parts[:1]) + (": " + ", ".join(parts[1:]) if len(parts) > 1 else "")


@dataclass(frozen=True)
class ValidationResult:
    passed: bool
    expectations: int
    failures: list[Failure]
    report: Path

    def summary(self) -> str:
        if self.passed:
            return f"all {self.expectations} expectations passed; report {self.report}"
        return f"{len(self.failures)} of {self.expectations} expectations failed"


class DataValidationError(RuntimeError):
    """The data failed the validation suite; training must not start."""

    def __init__(self, result: ValidationResult) -> None:
        self.result = result
        failed = f"{len(result.failures)} of {result.expectations} expectations failed"
        lines = [f"data validation failed: {failed}"]
        lines += [f"  - {f.describe()}" for f in result.failures]
        lines.append(f"  report: {result.report}")
        super().__init__("\n".join(lines))


def sample_table(images: dict[str, np.ndarray], labels: dict[str, np.ndarray]):
    """One row per image: the statistics the suite checks."""
    import pandas as pd

    frames = []
    for split, x in images.items():
        flat = x.reshape(len(x), -1).astype(np.float64)
        with np.errstate(invalid="ignore"):
            frames.append(
                pd.DataFrame(
                    {
                        "split": split,
                        "label": labels[split].astype(np.int64),
                        "height": x.shape[1],
                        "width": x.shape[2],
                        "mean": flat.mean(axis=1),
                        "std": flat.std(axis=1),
                        "min": flat.min(axis=1),
                        "max": flat.max(axis=1),
                        "finite": np.isfinite(flat).all(axis=1),
                        "digest": [
                            hashlib.blake2b(r.tobytes(), digest_size=8).hexdigest() for r in x
                        ],
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)[SAMPLE_COLUMNS]


def class_table(samples, classes: list[int]):
    """Count and share of each class in each split; a class absent from a split counts 0."""
    import pandas as pd

    labels = sorted(set(classes) | set(samples["label"].unique().tolist()))
    grid = pd.MultiIndex.from_product([sorted(samples["split"].unique()), labels])
    counts = samples.groupby(["split", "label"]).size().reindex(grid, fill_value=0)
    counts = counts.rename("count").rename_axis(["split", "label"]).reset_index()
    counts["share"] = counts["count"] / counts.groupby("split")["count"].transform("sum")
    return counts


def _suites(cfg: ValidateConfig, classes: list[int], shape: tuple[int, ...]):
    import great_expectations as gx

    E = gx.expectations
    samples = gx.ExpectationSuite(name="samples")
    for exp in (
        E.ExpectTableColumnsToMatchSet(column_set=SAMPLE_COLUMNS, exact_match=True),
        E.ExpectTableRowCountToBeBetween(min_value=cfg.min_rows),
        E.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
        E.ExpectColumnValuesToBeInSet(column="label", value_set=classes),
        E.ExpectColumnValuesToBeInSet(column="height", value_set=[shape[-2]]),
        E.ExpectColumnValuesToBeInSet(column="width", value_set=[shape[-1]]),
        E.ExpectColumnValuesToBeInSet(column="finite", value_set=[True]),
        E.ExpectColumnValuesToBeBetween(column="min", min_value=cfg.pixel_min),
        E.ExpectColumnValuesToBeBetween(column="max", max_value=cfg.pixel_max),
        E.ExpectColumnProportionOfUniqueValuesToBeBetween(
            column="digest", min_value=1.0 - cfg.max_duplicate_share
        ),
        *(E.ExpectColumnValuesToNotBeNull(column=c) for c in ("mean", "std", "min", "max")),
    ):
        samples.add_expectation(exp)

    balance = gx.ExpectationSuite(name="classes")
    for exp in (
        E.ExpectColumnDistinctValuesToEqualSet(column="label", value_set=classes),
        E.ExpectColumnDistinctValuesToEqualSet(column="split", value_set=list(SPLITS)),
        E.ExpectColumnValuesToBeBetween(column="share", min_value=cfg.min_class_share),
    ):
        balance.add_expectation(exp)
    return {"samples": samples, "classes": balance}


def run_suite(cfg: ValidateConfig, samples, classes: list[int], shape, report: Path):
    """Validate the tables; returns the result and writes its JSON summary."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from components.logs import quiet_libraries

    quiet_libraries()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas("mloop")
    tables = {"samples": samples, "classes": class_table(samples, classes)}
    failures: list[Failure] = []
    total = 0
    for name, suite in _suites(cfg, classes, shape).items():
        batch_def = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        batch = batch_def.get_batch(batch_parameters={"dataframe": tables[name]})
        outcome = batch.validate(suite)
        total += len(outcome.results)
        for r in outcome.results:
            if r.success:
                continue
            res = r.result or {}
            failures.append(
                Failure(
                    table=name,
                    expectation=r.expectation_config.type,
                    column=r.expectation_config.kwargs.get("column"),
                    unexpected_count=res.get("unexpected_count"),
                    observed=res.get("observed_value"),
                    examples=[_plain(v) for v in res.get("partial_unexpected_list") or []][:10],
                )
            )
    result = ValidationResult(
        passed=not failures, expectations=total, failures=failures, report=report
    )
    write_json(report, result)
    return result


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def validate_stage(params: Params, ws: Workspace) -> ValidationResult:
    """Validate the prepared splits; raises ``DataValidationError`` when any check fails."""
    meta = load_meta(ws.prepared)
    splits = {name: load_split(ws.prepared, name) for name in SPLITS}
    samples = sample_table({n: s.x for n, s in splits.items()}, {n: s.y for n, s in splits.items()})
    result = run_suite(
        params.validate_,
        samples,
        classes=[int(c) for c in meta["classes"]],
        shape=tuple(meta["image_shape"]),
        report=ws.report("validation.json"),
    )
    if not result.passed:
        raise DataValidationError(result)
    return result
