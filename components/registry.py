"""The ``register`` stage: a new model version and the promotion gate.

Every trained model becomes a version of the registered model with alias
``challenger``. Alias ``champion`` moves to it only when the gate says so: the
challenger must beat the current champion, both scored now on the same test
split, by more than ``register.min_improvement``. The first version becomes
champion. The decision and both scores are recorded as version tags.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from components.config import Params, RegisterConfig
from components.data import load_meta, load_split
from components.paths import Workspace
from components.records import read_json, write_json

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    metric: str
    challenger_score: float
    champion_score: float | None
    champion_version: str | None


@dataclass(frozen=True)
class RegistrationResult:
    model_name: str
    version: str
    aliases: list[str]
    decision: Decision
    record: Path

    def summary(self) -> str:
        verdict = "promoted to champion" if self.decision.promote else "not promoted"
        return (
            f"{self.model_name} version {self.version} {verdict} ({self.decision.reason});"
            f" aliases {', '.join(self.aliases)}"
        )


def decide(
    challenger_score: float,
    champion_score: float | None,
    cfg: RegisterConfig,
    champion_version: str | None = None,
) -> Decision:
    """The promotion gate: promote only a strictly better challenger."""
    if champion_score is None:
        return Decision(True, "no champion yet", cfg.metric, challenger_score, None, None)
    needed = champion_score + cfg.min_improvement
    if challenger_score > needed:
        reason = f"{cfg.metric} {challenger_score:.4f} beats champion {champion_score:.4f}"
        if cfg.min_improvement:
            reason += f" by more than {cfg.min_improvement}"
        return Decision(
            True, reason, cfg.metric, challenger_score, champion_score, champion_version
        )
    reason = (
        f"{cfg.metric} {challenger_score:.4f} does not beat champion {champion_score:.4f}"
        f" + margin {cfg.min_improvement}"
    )
    return Decision(False, reason, cfg.metric, challenger_score, champion_score, champion_version)


def alias_version(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def score_registered(name: str, version: str, params: Params, ws: Workspace) -> float:
    """Score a registered version on the current test split."""
    import mlflow

    from components.evaluation import score

    test = load_split(ws.prepared, "test")
    classes = load_meta(ws.prepared)["classes"]
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    proba = model.predict(test.x.astype("float32"))
    return score(test.y, proba, classes).metric(params.register_.metric)


def register_stage(params: Params, ws: Workspace) -> RegistrationResult:
    import mlflow

    from components.training import read_train_record

    cfg = params.register_
    trained = read_train_record(ws)
    metrics = read_json(ws.metrics, "evaluate")
    client = mlflow.MlflowClient()

    version = mlflow.register_model(
        trained.model_uri,
        cfg.model_name,
        tags={"mloop.run_id": trained.run_id, cfg.metric: str(metrics[cfg.metric])},
    ).version
    version = str(version)
    client.set_registered_model_alias(cfg.model_name, CHALLENGER, version)

    champion = alias_version(client, cfg.model_name, CHAMPION)
    champion_score = (
        score_registered(cfg.model_name, champion, params, ws) if champion is not None else None
    )
    decision = decide(float(metrics[cfg.metric]), champion_score, cfg, champion)
    for key, value in {
        "mloop.gate.decision": "promoted" if decision.promote else "rejected",
        "mloop.gate.reason": decision.reason,
        "mloop.gate.challenger_score": decision.challenger_score,
        "mloop.gate.champion_score": decision.champion_score,
        "mloop.gate.champion_version": decision.champion_version,
    }.items():
        client.set_model_version_tag(cfg.model_name, version, key, str(value))
    if decision.promote:
        client.set_registered_model_alias(cfg.model_name, CHAMPION, version)

    aliases = sorted(client.get_model_version(cfg.model_name, version).aliases)
    result = RegistrationResult(
        model_name=cfg.model_name,
        version=version,
        aliases=aliases,
        decision=decision,
        record=ws.report("registry.json"),
    )
    write_json(result.record, result)
    return result


def read_registration(ws: Workspace) -> dict:
    return read_json(ws.report("registry.json"), "register")


def lineage(reference: str) -> dict:
    """Model version, run, data version, commit and params of ``NAME@ALIAS`` or ``NAME/VERSION``."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        if "@" in reference:
            name, alias = reference.split("@", 1)
            version = client.get_model_version_by_alias(name, alias)
        elif "/" in reference:
            name, number = reference.split("/", 1)
            version = client.get_model_version(name, number)
        else:
            raise ValueError(f"{reference!r}: expected NAME@ALIAS or NAME/VERSION")
    except MlflowException as err:
        raise LookupError(
            f"{reference}: no such registered model version ({err.message})"
        ) from None
    run = client.get_run(version.run_id)
    tags = run.data.tags
    return {
        "model": f"{version.name} version {version.version}",
        "aliases": ", ".join(sorted(version.aliases)) or "-",
        "run": f"{run.info.run_id} ({run.info.run_name}, {run.info.status})",
        "experiment": run.info.experiment_id,
        "data": tags.get("mloop.data_name", "unknown"),
        "data version": tags.get("mloop.data_version", "unknown"),
        "git commit": tags.get("mloop.git_commit", "unknown"),
        "params hash": tags.get("mloop.params_hash", "unknown"),
        "gate": version.tags.get("mloop.gate.reason", "-"),
        "params": dict(run.data.params),
    }
