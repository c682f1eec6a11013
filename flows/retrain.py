"""The Prefect flow ``retrain``: new data in, then every stage of the loop, in order, as tasks.

First what arrived: each file or folder of the drop folder ``data/incoming/`` goes
through the data gate (a bad one to quarantine, the rest on), and the labelled
production traffic is harvested into a batch. A scheduled or drift-started run
(``trigger``) with no new accepted batch since the champion was trained ends
Completed, "no new data", and trains nothing; ``mloop run`` (manual) always trains.
Tasks receive the (small, frozen) params and the workspace, never data or
models: stages hand each other files, as under ``dvc repro``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed

from components.core.config import Params, load_params
from components.core.logs import setup_logging
from components.core.paths import Workspace, configure_environment, own_environment
from components.core.settings import settings
from components.core.stages import stage_function
from components.core.workspace_lock import workspace_lock
from flows.prefect_logs import flush_our_logs, send_our_logs_to_prefect
from flows.runners import task_runner

log = logging.getLogger(__name__)


def _stage_task(name: str):
    def run(params: Params, ws: Workspace):
        result = stage_function(name)(params, ws)
        log.info(f"[{name}] {result.summary()}")
        return result

    # Stages write files and registry entries: rerun them every time, never from a cache.
    return task(run, name=name, cache_policy=NO_CACHE, retries=0)


prepare = _stage_task("prepare")
validate = _stage_task("validate")
train = _stage_task("train")
baseline = _stage_task("baseline")
pretraining_report = _stage_task("pretraining-report")
evaluate = _stage_task("evaluate")
register = _stage_task("register")
compress = _stage_task("compress")
package = _stage_task("package")
monitor = _stage_task("monitor")


@task(name="ingest-incoming", cache_policy=NO_CACHE, retries=0)
def ingest_incoming(params: Params, ws: Workspace):
    from components.ingest.ingest import ingest_incoming as ingest_folder

    result = ingest_folder(params, ws)
    if result.results:
        log.info(f"[ingest] {result.summary()}")
        lines = [f"- {r.summary()}" for r in result.results]
        create_markdown_artifact(key="incoming", markdown="\n".join([result.summary(), "", *lines]),
                                 description=result.summary())  # fmt: skip
    return result


@task(name="harvest", cache_policy=NO_CACHE, retries=0)
def harvest(params: Params, ws: Workspace):
    from components.ingest.harvest import harvest as harvest_log

    result = harvest_log(params, ws)
    log.info(f"[harvest] {result.summary()}")
    return result


@task(name="new-data", cache_policy=NO_CACHE, retries=0)
def new_data(params: Params, ws: Workspace) -> list[str] | None:
    from components.register.commands import new_batches

    return new_batches(params, ws)


@dataclass(frozen=True)
class NoNewData:
    """A scheduled or drift-started run that found nothing new to learn from."""

    trigger: str
    message: str = "no new data"

    def summary(self) -> str:
        return (f"{self.message}: no accepted batch arrived since the champion was trained"
                f" ({self.trigger} run; nothing trained)")  # fmt: skip


TRIGGERS = ("manual", "schedule", "drift")


@dataclass(frozen=True)
class RetrainSummary:
    train: object
    evaluation: object
    registration: object
    compression: object
    bento: object
    drift: object


@flow(name="retrain")
def retrain(
    params_file: str = "params.yaml", workspace: str = ".", trigger: str = "manual"
) -> RetrainSummary:
    """Ingest the drop folder, harvest labelled traffic; then (when there is something new,
    or ``trigger`` is manual) prepare, validate, train, evaluate, register, compress,
    package and monitor."""
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger {trigger!r}: expected one of {', '.join(TRIGGERS)}")
    ws = Workspace(Path(workspace).resolve())
    configure_environment(ws)  # a worker's flow run starts here, not in the CLI
    setup_logging(settings().verbose)
    send_our_logs_to_prefect()  # the stages' lines reach the run's log in the UI
    params = load_params(params_file)
    with workspace_lock(ws, "mloop run"):  # a second run in this workspace is refused
        ingest_incoming(params, ws)
        harvest(params, ws)
        if trigger != "manual" and new_data(params, ws) == []:
            skipped = NoNewData(trigger)
            log.info(f"[retrain] {skipped.summary()}")
            flush_our_logs()
            return Completed(message=skipped.message, data=skipped)
        prepare(params, ws)
        validate(params, ws)  # raises on bad data: nothing below runs, nothing is promoted
        trained = train(params, ws)
        baseline(params, ws)  # trees for tables, TF-IDF for texts: a challenger of its own
        pretraining_report(params, ws)  # what pre-training bought, where asked for
        evaluation = evaluate(params, ws)
        registration = register(params, ws)
        compression = compress(params, ws)
        bento = package(params, ws)
        drift = monitor(params, ws)
    flush_our_logs()
    return RetrainSummary(trained, evaluation, registration, compression, bento, drift)


@task(name="retrain-workspace", cache_policy=NO_CACHE, retries=0)
def retrain_workspace(workspace: str, env: dict[str, str]) -> str:
    """``mloop run`` in one workspace, in a process of its own (its own embedded stores)."""
    log_file = Workspace(Path(workspace)).retrain_log
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli", "--workspace", workspace, "run"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    output = log_file.read_text()
    if done.returncode != 0:
        raise RuntimeError(
            f"{workspace}: retrain failed (exit {done.returncode}); log {log_file}:\n"
            f"{output[-2000:]}"
        )
    log.info(f"[{workspace}] {_gate_record(Workspace(Path(workspace)))}")
    return workspace


def _gate_record(ws: Workspace) -> str:
    """What a workspace's run decided, from the register stage's record (not its output)."""
    from components.register.stage import read_registration

    record = read_registration(ws)
    decision = record["decision"]
    said = "promoted" if decision["promote"] else "not promoted"
    return (f"{record['model_name']} version {record['version']} {said}:"
            f" {decision['metric']} {decision['challenger_score']:.4f}")  # fmt: skip


@dataclass(frozen=True)
class ManyResult:
    workspaces: tuple[str, ...]

    def summary(self) -> str:
        return f"{len(self.workspaces)} workspaces retrained: {', '.join(self.workspaces)}"


@flow(name="retrain-many")
def retrain_many(workspaces: list[str], parallel: int = 2) -> ManyResult:
    """``retrain`` for several data sets (one workspace each), ``parallel`` at a time.

    Run through ``retrain_many_flow(parallel)``, which picks the Dask task runner.
    Every workspace is retrained even when another fails; then the failures are raised.
    """
    env = own_environment()
    futures = [retrain_workspace.submit(str(Path(w).resolve()), env) for w in workspaces]
    done, failed = [], []
    for future in futures:
        try:
            done.append(future.result())
        except Exception as err:
            failed.append(str(err))
    if failed:
        listed = "\n".join(failed)
        raise RuntimeError(f"{len(failed)} of {len(futures)} retrains failed:\n{listed}")
    return ManyResult(tuple(done))


def retrain_many_flow(parallel: int):
    return retrain_many.with_options(task_runner=task_runner(parallel))
