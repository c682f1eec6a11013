"""The loop's stages in order, each a ``(params, workspace) -> result`` function.

Both front ends use this table: ``pipelines/`` (one entry point per stage, for
``dvc repro``) and the Prefect flow in ``flows/``. Functions are imported on
first use, so listing the stages costs no heavy import.
"""

from __future__ import annotations

from importlib import import_module

STAGES: dict[str, str] = {
    "prepare": "components.prepare.stage:prepare_stage",
    "validate": "components.validate.stage:validate_stage",
    "train": "components.train.stage:train_stage",
    "evaluate": "components.evaluate.stage:evaluate_stage",
    "register": "components.register.stage:register_stage",
    "compress": "components.compress.stage:compress_stage",
    "package": "components.package.stage:package_stage",
    "monitor": "components.monitor.stage:drift_selftest_stage",
}
# Steps that follow a stage on its own outputs, each a task of its own in the flow (the
# Prefect UI shows them); ``dvc repro`` runs them inside the stage they follow.
STEPS: dict[str, str] = {
    "baseline": "components.train.stage:baseline_step",
    "pretraining-report": "components.train.stage:pretraining_report_step",
}
FOLLOWS: dict[str, tuple[str, ...]] = {"train": ("baseline", "pretraining-report")}


def stage_function(name: str):
    """The ``(params, workspace) -> result`` function of a stage or a step."""
    table = {**STAGES, **STEPS}
    if name not in table:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    module, function = table[name].split(":")
    return getattr(import_module(module), function)
