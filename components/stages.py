"""The loop's stages in order, each a ``(params, workspace) -> result`` function.

Both front ends use this table: ``pipelines/`` (one entry point per stage, for
``dvc repro``) and the Prefect flow in ``flows/``. Functions are imported on
first use, so listing the stages costs no heavy import.
"""

from __future__ import annotations

from importlib import import_module

STAGES: dict[str, str] = {
    "prepare": "components.data:prepare_stage",
    "validate": "components.validation:validate_stage",
    "train": "components.training:train_stage",
    "evaluate": "components.evaluation:evaluate_stage",
    "register": "components.registry:register_stage",
    "compress": "components.compression:compress_stage",
    "package": "components.packaging:package_stage",
    "monitor": "components.monitoring:monitor_stage",
}


def stage_function(name: str):
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    module, function = STAGES[name].split(":")
    return getattr(import_module(module), function)
