"""Typed parameters of the loop, loaded once from ``params.yaml``.

Every section of the file has one pydantic model, here or (the data sections) in
``components.core.data_config``. Unknown keys and wrong
values fail at load time with the dotted name of the key, so a typo in
``params.yaml`` never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, model_validator

from components.core import families
from components.core.data_config import (  # noqa: F401 -- re-exported: the data sections
    BatchesConfig,
    DataConfig,
    ImageSource,
    IngestConfig,
    MissingPolicy,
    MissingRule,
    SyntheticSource,
    TabularSource,
    TextSource,
    ValidateConfig,
)
from components.core.sections import Section as _Section
from components.core.train_config import (  # noqa: F401 -- re-exported: the train section
    FamilySectionError,
    TrainConfig,
    workspace_root,
)


class RegisterConfig(_Section):
    """The MLflow registry and its promotion gate."""

    # the registered model (and, by default, the Bento's name)
    model_name: str = Field("digits-classifier", pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    # What the gate compares (the task's metrics, components/core/tasks; log loss, RMSE,
    # MAE, MAPE: lower wins); auto: the task's own (accuracy; RMSE for a regression).
    metric: Literal[
        "auto", "test_accuracy", "test_macro_f1", "test_roc_auc", "test_pr_auc",
        "test_log_loss", "test_rmse", "test_mae", "test_r2", "test_mape",
    ] = "auto"  # fmt: skip
    min_improvement: float = Field(0.0, ge=0)
    # With a recent slice (new batches): the challenger must beat the champion on it and
    # lose at most this much of register.metric on the frozen test split (a regression:
    # this share of the champion's score, its metrics being in the label's units).
    max_regression: float = Field(0.01, ge=0, le=1)
    # Hard limits on the challenger (None: no limit): CPU p95 latency at batch 1, file size.
    max_latency_p95_ms: float | None = Field(None, gt=0)
    max_size_mb: float | None = Field(None, gt=0)


VARIANTS = (
    "pruned", "structured", "dynamic-int8", "static-int8", "onnx", "onnx-int8", "distilled",
    "distilled-int8",
)  # fmt: skip


class DistillConfig(_Section):
    """The student the ``distilled`` variants train from the champion (the teacher)."""

    student: Literal["same", "mlp"] = "same"  # the teacher's family, smaller; or an MLP
    width: int = Field(16, ge=1, le=1024)  # conv channels of a CNN/ResNet student
    hidden: int = Field(48, ge=1, le=8192)  # dense layer of a CNN student
    mlp_layers: list[int] = Field([64], min_length=1)  # an MLP student's layers
    dropout: float = Field(0.1, ge=0, lt=1)  # the student's
    temperature: float = Field(4.0, gt=0)  # softens both outputs in the distillation loss
    alpha: float = Field(0.7, ge=0, le=1)  # share of the loss on the teacher's outputs
    # auto: a third of the training run's epochs (the student is smaller: the stage stays
    # within what training cost)
    epochs: int | Literal["auto"] = "auto"
    learning_rate: float = Field(0.003, gt=0)

    def epochs_for(self, train_epochs: int) -> int:
        return max(1, round(train_epochs / 3)) if self.epochs == "auto" else self.epochs

    @model_validator(mode="after")
    def _positive(self) -> DistillConfig:
        if self.epochs != "auto" and self.epochs < 1:
            raise ValueError("epochs must be at least 1, or auto")
        return self


class CompressConfig(_Section):
    """Pruning, int8 and distillation of the champion, under an accuracy budget."""

    # Which variants to build beside the fp32 champion; the int8 ones start from the
    # structured-pruned net where there is one (CNN, MLP), else from the champion.
    variants: list[Literal[VARIANTS]] = list(VARIANTS)  # type: ignore[valid-type]
    prune_amount: float = Field(0.5, ge=0, lt=1)  # share of weights zeroed (unstructured)
    prune_steps: int = Field(1, ge=1, le=20)  # reach prune_amount in steps, tuned after each
    structured_amount: float = Field(0.25, ge=0, lt=1)  # share of channels/neurons removed
    # after each pruning; auto: a tenth of the training run's epochs
    finetune_epochs: int | Literal["auto"] = "auto"
    finetune_learning_rate: float = Field(0.002, gt=0)
    calibration_samples: int = Field(512, ge=16)  # training samples for static int8
    max_accuracy_drop: float = Field(0.005, ge=0, le=1)  # vs fp32 on the validation split
    # a regression's budget: validation RMSE may rise by this share of the fp32 champion's
    max_rmse_increase: float = Field(0.01, ge=0, le=1)
    latency_batch: int = Field(1, ge=1)  # "fastest" means lowest p50 at this batch size
    # Which variant within budget ships: the fastest, or the smallest of those within
    # speed_tolerance of the fastest; none that is not faster than fp32 by more than
    # speed_tolerance either (a tenth: timing noise decides nothing)
    choose: Literal["fastest", "smallest"] = "smallest"
    speed_tolerance: float = Field(0.1, ge=0, lt=1)
    latency_repeats: int = Field(200, ge=5)
    distill: DistillConfig = DistillConfig()
    # Measurement-only work (the student trained without its teacher, a reference row):
    # off by default, so the stage costs at most what the training it compresses cost.
    report_baselines: bool = False

    def finetune_epochs_for(self, train_epochs: int) -> int:
        if self.finetune_epochs == "auto":
            return max(1, round(train_epochs * 0.1))
        return self.finetune_epochs

    @model_validator(mode="after")
    def _epochs(self) -> CompressConfig:
        if self.finetune_epochs != "auto" and self.finetune_epochs < 0:
            raise ValueError("finetune_epochs must be at least 0, or auto")
        return self


class PackageConfig(_Section):
    """The Bento (BentoML) around the served model."""

    # The Bento's name; null: the registered model's name (register.model_name)
    service_name: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_.-]*$")


class MonitorConfig(_Section):
    """Drift (Evidently) on the logged traffic, and what drift does."""

    drift_threshold: float = Field(0.4, gt=0, le=1)  # share of drifted columns that is drift
    stattest_threshold: float = Field(0.05, gt=0, lt=1)  # a column's test p-value for drift
    # the drift self-test of mloop run: batches of this size, clean, noisy (noise_std of
    # gaussian noise on the pixel scale) and shifted (intensity_shift added)
    batch_size: int = Field(300, ge=30)
    noise_std: float = Field(4.0, ge=0)
    intensity_shift: float = 3.0
    # Production checks (the ``monitor`` flow, over the inference log):
    min_rows: int = Field(200, ge=30)  # fewer new predictions than this: wait for more
    # Larger windows are tested on a random sample of this many rows: a test's power
    # grows with n, and at 100k rows it flags differences no one would retrain for.
    test_rows: int = Field(1000, ge=30)
    retrain_on_drift: bool = True
    cooldown_minutes: float = Field(60.0, ge=0)  # no second drift retrain within this time
    interval_minutes: float = Field(10.0, gt=0)  # how often `mloop deploy` runs the check
    retrain_cron: str = "0 3 * * 0"  # the scheduled retrain of `mloop deploy` (Sunday 03:00)


class ExplainConfig(_Section):
    """Explanations (components/evaluate/explain): what the evaluate stage attributes, and how."""

    # Integrated Gradients' interpolation steps: each input starts here and doubles, up
    # to max_steps, while its completeness error is over 5%
    steps: int = Field(32, ge=2, le=1024)
    max_steps: int = Field(256, ge=2, le=4096)
    # validation rows (texts, images) the whole model's explanation is measured on
    sample: int = Field(200, ge=10, le=100_000)
    examples: int = Field(4, ge=0, le=16)  # images: test images drawn with their maps


class SweepRange(_Section):
    """One searched value: ``low``/``high`` (``log`` for a log scale) or ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[int | float | str] | None = None
    integer: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> SweepRange:
        if self.choices is None and (
            self.low is None or self.high is None or self.low >= self.high
        ):
            raise ValueError("give choices, or low < high")
        return self


class SweepConfig(_Section):
    """``mloop sweep``: an Optuna search, each trial a Prefect task."""

    trials: int = Field(8, ge=1)  # trials in all
    parallel: int = Field(1, ge=1, le=64)  # trials at a time, each a Prefect task on Dask
    warmup_epochs: int = Field(2, ge=0)  # no pruning before this many epochs
    space: dict[str, SweepRange] = {  # train.* keys and the range each is searched in
        "train.learning_rate": SweepRange(low=3e-4, high=1e-2, log=True),
        "train.cnn.width": SweepRange(choices=[16, 32, 64]),
        "train.dropout": SweepRange(low=0.0, high=0.5),
    }

    @model_validator(mode="after")
    def _known_keys(self) -> SweepConfig:
        for name in self.space:
            section, _, key = name.partition(".")
            family, _, option = key.partition(".")
            known = section == "train" and (
                key in TrainConfig.model_fields
                or (family in families.names() and option in
                    {f.name for f in dataclasses.fields(families.get(family).config)})
            )  # fmt: skip
            if not known:
                raise ValueError(f"sweep.space: {name!r} is not a train.* parameter (nor a"
                                 " train.<family>.* one)")  # fmt: skip
        return self


class Params(_Section):
    seed: int = 42  # every split, initialisation and sample is seeded from it
    data: DataConfig = DataConfig()
    # In params.yaml `validate` and `register`; in code `gate` and `registry` (pydantic
    # models have methods of the yaml names).
    gate: ValidateConfig = Field(ValidateConfig(), alias="validate")
    ingest: IngestConfig = IngestConfig()
    train: TrainConfig = TrainConfig()
    registry: RegisterConfig = Field(RegisterConfig(), alias="register")
    compress: CompressConfig = CompressConfig()
    package: PackageConfig = PackageConfig()
    monitor: MonitorConfig = MonitorConfig()
    explain: ExplainConfig = ExplainConfig()
    sweep: SweepConfig = SweepConfig()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def digest(self) -> str:
        """A short, stable hash of every value, recorded with each run for lineage."""
        blob = json.dumps(self.model_dump(by_alias=True), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def flat(self) -> dict[str, object]:
        """``{"train.epochs": 20, ...}``: the form MLflow params take."""
        flat: dict[str, object] = {}
        for section, values in self.model_dump(by_alias=True, exclude={"sweep"}).items():
            if not isinstance(values, dict):
                flat[section] = values
                continue
            for key, value in values.items():
                if section == "train" and isinstance(value, dict):  # train.<family>.<key>
                    flat.update({f"train.{key}.{k}": v for k, v in value.items()})
                else:
                    flat[f"{section}.{key}"] = value
        return flat


class ParamsError(ValueError):
    """``params.yaml`` is missing, unreadable or holds a wrong key or value."""


def parse_params(raw: object, source: str = "params") -> Params:
    """Validate a mapping of parameters; errors name each offending key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except FamilySectionError as err:
        raise ParamsError(
            f"{source}: invalid parameters\n"
            + "\n".join(f"  {key}: {msg}" for key, msg in err.lines)
        ) from None
    except ValidationError as err:
        lines = []
        for e in err.errors():
            key = ".".join(str(part) for part in e["loc"]) or "<root>"
            if e["type"] == "extra_forbidden":
                lines.append(f"  {key}: unknown key")
            else:
                got = repr(e.get("input"))
                got = got if len(got) <= 80 else got[:65] + f"... ({len(got)} chars)"
                lines.append(f"  {key}: {e['msg']} (got {got})")
        raise ParamsError(f"{source}: invalid parameters\n" + "\n".join(lines)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: no such parameters file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if raw is None:  # an empty file is more likely a mistake than a wish for every default
        raise ParamsError(f"{path}: empty; write the sections to set, or {{}} for all defaults")
    with workspace_root(path.resolve().parent):  # train.families import from here
        return parse_params(raw, source=str(path))
