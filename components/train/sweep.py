"""Hyper-parameter sweeps: an Optuna study over the ranges declared in ``params.yaml``.

Each trial trains through the same ``fit`` as the train stage and is a nested
MLflow run under one parent ``sweep`` run, so the MLflow UI's compare view
lines them up. Hopeless trials are pruned after any epoch by the median rule,
from inside training (the epoch callback raises ``optuna.TrialPruned``). The
best values are written to ``best_params.yaml``, shaped like ``params.yaml``,
for ``dvc.yaml`` or a merge.

The study lives in an Optuna journal file under ``.mloop/optuna/``, so trials
can run in other processes (the Prefect flow ``sweep`` runs them as tasks, in
parallel under ``--parallel``): each opens the study, asks for its values,
reports every epoch (pruning sees the other trials' reports) and tells the
result. One after another in this process is the default.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from components.core.config import Params, SweepRange
from components.core.paths import Workspace
from components.core.splits import load_meta, load_split
from components.core.tasks import task_of


@dataclass(frozen=True)
class Study:
    """A sweep under way: where its Optuna study is and its parent MLflow run."""

    name: str
    journal: Path
    parent_run_id: str
    trials: int
    threads: int  # torch threads per trial: the cores shared among parallel trials
    tracking_uri: str  # the parent run's store: trials on other machines log there too


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    state: str  # COMPLETE or PRUNED
    value: float | None


@dataclass(frozen=True)
class SweepResult:
    parent_run_id: str
    trials: int
    pruned: int
    best_value: float
    best_params: dict[str, object]
    best_file: Path

    def summary(self) -> str:
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in self.best_params.items())  # fmt: skip
        return (
            f"{self.trials} trials ({self.pruned} pruned); best {self.best_value:.4f}"
            f" with {shown}; written to {self.best_file}"
        )


def suggest(trial, name: str, space: SweepRange):
    if space.choices is not None:
        return trial.suggest_categorical(name, space.choices)
    if space.integer:
        return trial.suggest_int(name, int(space.low), int(space.high), log=space.log)
    return trial.suggest_float(name, float(space.low), float(space.high), log=space.log)


def nest(raw: dict, values: dict[str, object]) -> dict:
    """``raw`` (a mapping as in params.yaml) with ``{"train.cnn.width": 32, ...}`` set at
    their depth; a section it lacks (a family's, left at its defaults) is made."""
    for dotted, value in values.items():
        *sections, key = dotted.split(".")
        target = raw
        for section in sections:
            target = target.setdefault(section, {})
        target[key] = value
    return raw


def with_values(params: Params, values: dict[str, object]) -> Params:
    """``params`` with ``{"train.learning_rate": ...}`` applied (validated again); keys
    may go deeper (``compress.distill.width``)."""
    from components.core.config import parse_params

    return parse_params(nest(params.model_dump(by_alias=True), values), source="sweep")


def _storage(study: Study):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(study.journal)))


def _load(study: Study, params: Params, slot: int):
    """The study as trial ``slot`` sees it: its own sampler seed, the shared pruning rule."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(
        study_name=study.name,
        storage=_storage(study),
        sampler=optuna.samplers.TPESampler(seed=params.seed + slot),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=2, n_warmup_steps=params.sweep.warmup_epochs
        ),
    )


def open_sweep(
    params: Params, ws: Workspace, trials: int | None = None, parallel: int = 1
) -> Study:
    """Create the parent run and the study that ``run_trial`` calls share."""
    import optuna

    from components.core import tracking

    n_trials = trials or params.sweep.trials
    parent = tracking.create_run(
        ws, params.data.name, run_name="sweep", tags={"mloop.stage": "sweep"}
    )
    parent.log_params({"sweep.trials": n_trials, "sweep.parallel": parallel,
                       "sweep.space": sorted(params.sweep.space)})  # fmt: skip
    study = Study(
        name=f"sweep-{parent.run_id}",
        journal=ws.optuna / f"{parent.run_id}.journal",
        parent_run_id=parent.run_id,
        trials=n_trials,
        threads=max(1, (os.cpu_count() or 1) // max(1, parallel)),
        tracking_uri=tracking.tracking_uri(),
    )
    study.journal.parent.mkdir(parents=True, exist_ok=True)
    _, direction = objective_of(load_meta(ws.prepared))
    optuna.create_study(study_name=study.name, storage=_storage(study), direction=direction)
    return study


def objective_of(meta: dict) -> tuple[str, str]:
    """What a trial is scored by, and which way is better: val accuracy (up), a
    regression's val RMSE (down)."""
    return ("val/rmse", "minimize") if task_of(meta).outputs_values else ("val/acc", "maximize")


def run_trial(params: Params, ws: Workspace, study: Study, slot: int) -> TrialOutcome:
    """One trial: values from the study, a nested MLflow run, pruning after any epoch."""
    import optuna
    import torch

    from components.core import tracking
    from components.train.models import build_net
    from components.train.trainer import net_spec, train_classifier

    torch.set_num_threads(study.threads)
    meta = load_meta(ws.prepared)
    train, val = load_split(ws.prepared, "train"), load_split(ws.prepared, "val")
    optuna_study = _load(study, params, slot)
    objective, _ = objective_of(meta)
    trial = optuna_study.ask()
    values = {name: suggest(trial, name, space) for name, space in params.sweep.space.items()}
    trial_params = with_values(params, values)
    state, value = "COMPLETE", None
    with tracking.start_run(ws, params.data.name, run_name=f"trial-{trial.number}",
                            parent_run_id=study.parent_run_id) as run:  # fmt: skip
        run.log_params(trial_params.flat())

        def report(epoch: int, metrics: dict[str, float]) -> None:
            run.log_epoch(epoch, metrics)
            trial.report(metrics[objective], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")

        torch.manual_seed(params.seed)
        net = build_net(net_spec(trial_params, meta, train))
        try:
            result = train_classifier(net, trial_params.train, params.seed, train, val,
                                      task_of(meta).objective, on_epoch=report)  # fmt: skip
        except optuna.TrialPruned:  # a pruned trial is no failed run
            state = "PRUNED"
        else:
            value = result.history[-1][objective]
            run.log_metrics({"objective": value})
        run.set_tags(
            {"optuna.state": state, "mloop.worker": f"{socket.gethostname()}:{os.getpid()}"}
        )
    if state == "PRUNED":
        optuna_study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        optuna_study.tell(trial, value)
    return TrialOutcome(trial.number, state, value)


def close_sweep(params: Params, ws: Workspace, study: Study) -> SweepResult:
    """Log the best trial on the parent run, end it, and write ``best_params.yaml``."""
    import optuna
    import yaml

    from components.core import tracking

    done = _load(study, params, 0)
    best = done.best_trial  # raises if no trial completed
    parent = tracking.Run(study.parent_run_id, "")
    objective, _ = objective_of(load_meta(ws.prepared))
    parent.log_metrics({f"best_{objective.replace('/', '_')}": best.value})
    parent.log_params({f"best.{k}": v for k, v in best.params.items()})
    nested = nest({}, best.params)  # train.cnn.width -> train: {cnn: {width: ...}}
    best_file = ws.root / "best_params.yaml"
    best_file.write_text(
        f"# Best of {len(done.trials)} trials ({objective} {best.value:.4f});"
        f" MLflow run {study.parent_run_id}\n" + yaml.safe_dump(nested, sort_keys=True)
    )
    parent.end("FINISHED")
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in done.trials)
    return SweepResult(
        study.parent_run_id, len(done.trials), pruned, best.value, best.params, best_file
    )


TrialRunner = Callable[[Study, Iterable[int]], list[TrialOutcome]]


def run_sweep(
    params: Params,
    ws: Workspace,
    trials: int | None = None,
    run_trials: TrialRunner | None = None,
    parallel: int = 1,
) -> SweepResult:
    """The whole sweep; ``run_trials`` runs the trial slots (default: one after another here)."""
    from components.core import tracking

    study = open_sweep(params, ws, trials, parallel)
    sequential: TrialRunner = lambda s, slots: [run_trial(params, ws, s, i) for i in slots]  # noqa: E731
    try:
        (run_trials or sequential)(study, range(study.trials))
        return close_sweep(params, ws, study)
    except BaseException:
        tracking.Run(study.parent_run_id, "").end("FAILED")
        raise
