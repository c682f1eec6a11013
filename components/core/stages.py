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


def stage_function(name: str):
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    module, function = STAGES[name].split(":")
    return getattr(import_module(module), function)
