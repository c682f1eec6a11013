"""The Prefect flow ``retrain``: every stage of the loop, in order, as tasks.

Tasks receive the (small, frozen) params and the workspace, never data or
models: stages hand each other files, as under ``dvc repro``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from components.config import Params, load_params
from components.paths import Workspace, configure_environment
from components.stages import stage_function


def _stage_task(name: str):
    def run(params: Params, ws: Workspace):
        result = stage_function(name)(params, ws)
        print(f"[{name}] {result.summary()}", flush=True)
        return result

    # Stages write files and registry entries: rerun them every time, never from a cache.
    return task(run, name=name, cache_policy=NO_CACHE, retries=0)


prepare = _stage_task("prepare")
validate = _stage_task("validate")
train = _stage_task("train")
evaluate = _stage_task("evaluate")
register = _stage_task("register")
compress = _stage_task("compress")
package = _stage_task("package")
monitor = _stage_task("monitor")


@dataclass(frozen=True)
class RetrainSummary:
    train: object
    evaluation: object
    registration: object
    compression: object
    bento: object
    drift: object


@flow(name="retrain")
def retrain(params_file: str = "params.yaml", workspace: str = ".") -> RetrainSummary:
    """Prepare, validate, train, evaluate, register, compress, package and monitor."""
    ws = Workspace(Path(workspace).resolve())
    configure_environment(ws)  # a worker's flow run starts here, not in the CLI
    params = load_params(params_file)
    prepare(params, ws)
    validate(params, ws)  # raises on bad data: nothing below runs, nothing is promoted
    trained = train(params, ws)
    evaluation = evaluate(params, ws)
    registration = register(params, ws)
    compression = compress(params, ws)
    bento = package(params, ws)
    drift = monitor(params, ws)
    return RetrainSummary(trained, evaluation, registration, compression, bento, drift)
