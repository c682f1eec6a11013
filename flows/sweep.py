"""The Prefect flow ``sweep``: Optuna trials as Prefect tasks, fanned out over Dask.

The study and the parent MLflow run are opened here; each trial is one task
that opens the shared study itself, so ``--parallel N`` runs N trials at a
time on Dask (``flows.runners``; one after another in this process when N is 1).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from components.core.config import Params, load_params
from components.core.paths import Workspace, configure_environment
from components.core.settings import settings
from components.train.sweep import Study, SweepResult, TrialOutcome, run_sweep, run_trial
from flows.prefect_logs import send_our_logs_to_prefect
from flows.runners import task_runner

log = logging.getLogger(__name__)


@task(name="trial", cache_policy=NO_CACHE, retries=0)
def trial(params: Params, ws: Workspace, study: Study, slot: int) -> TrialOutcome:
    from components.core.logs import setup_logging

    setup_logging(settings().verbose)  # in a Dask worker, too
    send_our_logs_to_prefect()
    # A worker may be another machine's process: the sweep's store, the workspace's defaults.
    os.environ["MLFLOW_TRACKING_URI"] = study.tracking_uri
    configure_environment(ws)
    outcome = run_trial(params, ws, study, slot)
    log.info(f"[trial {outcome.number}] {outcome.state} val/acc {outcome.value}")
    return outcome


@flow(name="sweep")
def sweep(
    params_file: str = "params.yaml", workspace: str = ".", trials: int | None = None,
    parallel: int | None = None,
) -> SweepResult:  # fmt: skip
    """An Optuna study over ``sweep.space``; trials are tasks of this flow."""
    ws = Workspace(Path(workspace).resolve())
    configure_environment(ws)  # a worker's flow run starts here, not in the CLI
    params = load_params(params_file)
    n_parallel = parallel or params.sweep.parallel

    def as_tasks(study: Study, slots) -> list[TrialOutcome]:
        futures = [trial.submit(params, ws, study, slot) for slot in slots]
        return [future.result() for future in futures]

    return run_sweep(params, ws, trials, as_tasks, n_parallel)


def sweep_flow(parallel: int):
    """The flow with a task runner for ``parallel`` trials at a time."""
    return sweep.with_options(task_runner=task_runner(parallel))
