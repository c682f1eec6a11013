"""Hyper-parameter sweeps: an Optuna study over the ranges declared in ``params.yaml``.

Each trial trains through the same ``fit`` as the train stage and is a nested
MLflow run under one parent ``sweep`` run, so the MLflow UI's compare view
lines them up. Hopeless trials are pruned after any epoch by the median rule,
from inside training (the epoch callback raises ``optuna.TrialPruned``). The
best values are written to ``best_params.yaml``, shaped like ``params.yaml``,
for ``dvc.yaml`` or a merge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from components.config import Params, SweepRange
from components.data import load_meta, load_split
from components.paths import Workspace


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
            f"{self.trials} trials ({self.pruned} pruned); best val/acc {self.best_value:.4f}"
            f" with {shown}; written to {self.best_file}"
        )


def suggest(trial, name: str, space: SweepRange):
    if space.choices is not None:
        return trial.suggest_categorical(name, space.choices)
    if space.integer:
        return trial.suggest_int(name, int(space.low), int(space.high), log=space.log)
    return trial.suggest_float(name, float(space.low), float(space.high), log=space.log)


def with_values(params: Params, values: dict[str, object]) -> Params:
    """``params`` with ``{"train.learning_rate": ...}`` applied (validated again)."""
    from components.config import parse_params

    raw = params.model_dump(by_alias=True)
    for dotted, value in values.items():
        section, key = dotted.split(".", 1)
        raw[section][key] = value
    return parse_params(raw, source="sweep")


def run_sweep(params: Params, ws: Workspace, trials: int | None = None) -> SweepResult:
    import optuna
    import torch
    import yaml

    from components import tracking
    from components.models import build_net
    from components.training import fit, net_spec

    cfg = params.sweep
    n_trials = trials or cfg.trials
    meta = load_meta(ws.prepared)
    train, val = load_split(ws.prepared, "train"), load_split(ws.prepared, "val")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=params.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=cfg.warmup_epochs),
    )

    with tracking.start_run(ws, params.data.name, run_name="sweep",
                            tags={"mloop.stage": "sweep"}) as parent:  # fmt: skip
        parent.log_params({"sweep.trials": n_trials, "sweep.space": sorted(cfg.space)})

        def objective(trial) -> float:
            values = {name: suggest(trial, name, space) for name, space in cfg.space.items()}
            trial_params = with_values(params, values)
            pruned = None
            with tracking.start_run(ws, params.data.name, run_name=f"trial-{trial.number}",
                                    nested=True) as run:  # fmt: skip
                run.log_params(trial_params.flat())

                def report(epoch: int, metrics: dict[str, float]) -> None:
                    run.log_epoch(epoch, metrics)
                    trial.report(metrics["val/acc"], epoch)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"pruned after epoch {epoch}")

                torch.manual_seed(params.seed)
                net = build_net(net_spec(trial_params, meta, train))
                try:
                    result = fit(net, trial_params.train, params.seed, train, val, report)
                except optuna.TrialPruned as stop:  # a pruned trial is no failed run
                    pruned = stop
                    run.set_tags({"optuna.state": "PRUNED"})
                else:
                    value = result.history[-1]["val/acc"]
                    run.set_tags({"optuna.state": "COMPLETE"})
                    run.log_metrics({"objective": value})
            if pruned is not None:
                raise pruned
            return value

        study.optimize(objective, n_trials=n_trials, catch=())
        best = study.best_trial
        parent.log_metrics({"best_val_acc": best.value})
        parent.log_params({f"best.{k}": v for k, v in best.params.items()})

    nested: dict[str, dict] = {}
    for dotted, value in best.params.items():
        section, key = dotted.split(".", 1)
        nested.setdefault(section, {})[key] = value
    best_file = ws.root / "best_params.yaml"
    best_file.write_text(
        f"# Best of {n_trials} trials (val/acc {best.value:.4f}); MLflow run {parent.run_id}\n"
        + yaml.safe_dump(nested, sort_keys=True)
    )
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    return SweepResult(parent.run_id, len(study.trials), pruned, best.value, best.params, best_file)
