"""The model registry: versions, the promotion gate, promote, rollback, and compressed versions.

Every trained model becomes a version of the registered model with alias
``challenger``. Alias ``champion`` moves to it only when the gate says so: the
challenger must beat the current champion, both scored on the same test split,
by more than ``register.min_improvement``, and stay under the latency and size
limits. The decision, its reasons and both scores are recorded as version tags
and in ``reports/gate.json``. Each champion is appended to a history (a tag of
the registered model), which ``rollback`` walks back.

Gate decisions and alias moves hold a lock (a file beside the SQLite store, or
``MLOOP_REGISTRY_LOCK``), so two flows finishing at once decide one after the
other and the second is measured against the first's result.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from components.data import load_meta, load_split
from components.paths import Workspace
from components.records import read_json, write_json

if TYPE_CHECKING:  # types only
    from components.config import Params, RegisterConfig

CHAMPION = "champion"
CHALLENGER = "challenger"
COMPRESSED = "champion-compressed"
HISTORY_TAG = "mloop.champion_history"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    metric: str
    challenger_score: float
    champion_score: float | None
    champion_version: str | None
    reasons: tuple[str, ...] = ()  # every rule's verdict
    forced: bool = False


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
    latency_p95_ms: float | None = None,
    size_mb: float | None = None,
) -> Decision:
    """The promotion gate: a strictly better challenger, inside the latency and size limits."""
    failed, passed = [], []
    if cfg.max_latency_p95_ms is not None and latency_p95_ms is not None:
        verdict = f"latency p95 {latency_p95_ms:.3f} ms vs limit {cfg.max_latency_p95_ms} ms"
        (failed if latency_p95_ms > cfg.max_latency_p95_ms else passed).append(verdict)
    if cfg.max_size_mb is not None and size_mb is not None:
        verdict = f"size {size_mb:.3f} MB vs limit {cfg.max_size_mb} MB"
        (failed if size_mb > cfg.max_size_mb else passed).append(verdict)
    if champion_score is None:
        passed.append("no champion yet")
    elif challenger_score > champion_score + cfg.min_improvement:
        passed.append(
            f"{cfg.metric} {challenger_score:.4f} beats champion {champion_score:.4f}"
            + (f" by more than {cfg.min_improvement}" if cfg.min_improvement else "")
        )
    else:
        failed.append(
            f"{cfg.metric} {challenger_score:.4f} does not beat champion {champion_score:.4f}"
            f" + margin {cfg.min_improvement}"
        )
    promote = not failed
    reason = "; ".join(failed) if failed else passed[-1]
    return Decision(
        promote,
        reason,
        cfg.metric,
        challenger_score,
        champion_score,
        champion_version,
        tuple(failed + passed),
    )


def alias_version(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


@contextmanager
def registry_lock(ws: Workspace, timeout: float = 600) -> Iterator[None]:
    """One gate decision at a time per registry (per tracking store)."""
    from filelock import FileLock

    from components.tracking import tracking_uri

    path = os.environ.get("MLOOP_REGISTRY_LOCK")
    uri = tracking_uri()
    if not path and uri.startswith("sqlite:///"):
        path = uri.removeprefix("sqlite:///") + ".registry.lock"
    path = path or str(ws.state / "registry.lock")
    with FileLock(path, timeout=timeout):
        yield


def score_registered(name: str, version: str, params: Params, ws: Workspace) -> float:
    """Score a registered version on the current test split."""
    import mlflow
    import numpy as np

    from components.evaluation import score

    test = load_split(ws.prepared, "test")
    classes = load_meta(ws.prepared)["classes"]
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    proba = model.predict(test.x.astype("float32"))
    if isinstance(proba, dict):  # ONNX models answer {output name: array}
        proba = next(iter(proba.values()))
    return score(test.y, np.asarray(proba), classes).metric(params.register_.metric)


def measure_weights(ws: Workspace, repeats: int = 200) -> tuple[float, float]:
    """CPU p95 latency at batch 1 (ms) and size (MB) of the trained weights."""
    from components.compression import latency_ms
    from components.evaluation import torch_predictor
    from components.models import load_net

    net, _ = load_net(ws.model_file)
    example = load_split(ws.prepared, "test").x[:1].astype("float32")
    _, p95 = latency_ms(torch_predictor(net), example, repeats)
    return p95, ws.model_file.stat().st_size / 1e6


def _history(client, name: str) -> list[str]:
    return json.loads(client.get_registered_model(name).tags.get(HISTORY_TAG, "[]"))


def _crown(client, name: str, version: str) -> None:
    """Move ``champion`` to ``version`` and append it to the history."""
    history = [v for v in _history(client, name) if v != version] + [version]
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    client.set_registered_model_alias(name, CHAMPION, version)
    follow_champion(client, name, version)


def follow_champion(client, name: str, champion: str) -> str | None:
    """Point ``champion-compressed`` at the newest compressed variant of ``champion``, or
    remove it when that champion has none (then the champion itself is served)."""
    variants = [
        int(mv.version)
        for mv in client.search_model_versions(f"name='{name}'")
        if mv.tags.get("mloop.kind") == "compressed"
        and mv.tags.get("mloop.parent_version") == champion
    ]
    if variants:
        client.set_registered_model_alias(name, COMPRESSED, str(max(variants)))
        return str(max(variants))
    if alias_version(client, name, COMPRESSED) is not None:
        client.delete_registered_model_alias(name, COMPRESSED)
    return None


def _record(client, name: str, version: str, decision: Decision, ws: Workspace) -> Path:
    for key, value in {
        "mloop.gate.decision": "promoted" if decision.promote else "rejected",
        "mloop.gate.reason": decision.reason,
        "mloop.gate.reasons": " | ".join(decision.reasons),
        "mloop.gate.challenger_score": decision.challenger_score,
        "mloop.gate.champion_score": decision.champion_score,
        "mloop.gate.champion_version": decision.champion_version,
        "mloop.gate.forced": decision.forced,
        "mloop.gate.time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }.items():
        client.set_model_version_tag(name, version, key, str(value))
    report = ws.report("gate.json")
    write_json(report, {"model_name": name, "version": version, "decision": decision})
    return report


def register_stage(params: Params, ws: Workspace) -> RegistrationResult:
    import mlflow

    from components.training import read_train_record

    cfg = params.register_
    trained = read_train_record(ws)
    metrics = read_json(ws.metrics, "evaluate")
    latency_p95, size_mb = measure_weights(ws)
    client = mlflow.MlflowClient()
    version = str(
        mlflow.register_model(
            trained.model_uri,
            cfg.model_name,
            tags={
                "mloop.run_id": trained.run_id,
                "mloop.kind": "trained",
                cfg.metric: str(metrics[cfg.metric]),
                "mloop.latency_p95_ms": f"{latency_p95:.4f}",
                "mloop.size_mb": f"{size_mb:.4f}",
            },
        ).version
    )
    with registry_lock(ws):
        client.set_registered_model_alias(cfg.model_name, CHALLENGER, version)
        champion = alias_version(client, cfg.model_name, CHAMPION)
        champion_score = (
            score_registered(cfg.model_name, champion, params, ws) if champion else None
        )
        decision = decide(
            float(metrics[cfg.metric]), champion_score, cfg, champion, latency_p95, size_mb
        )
        if decision.promote:
            _crown(client, cfg.model_name, version)
        _record(client, cfg.model_name, version, decision, ws)
    aliases = sorted(client.get_model_version(cfg.model_name, version).aliases)
    result = RegistrationResult(
        cfg.model_name, version, aliases, decision, ws.report("registry.json")
    )
    write_json(result.record, result)
    return result


def promote(params: Params, ws: Workspace, version: str, force: bool = False) -> Decision:
    """``mloop promote``: the gate for one registered version; ``force`` overrides a no."""
    import mlflow
    from mlflow.exceptions import MlflowException

    cfg = params.register_
    client = mlflow.MlflowClient()
    try:
        tags = client.get_model_version(cfg.model_name, version).tags
    except MlflowException:
        raise LookupError(f"{cfg.model_name} has no version {version}") from None
    if tags.get("mloop.kind") == "compressed":
        raise ValueError(f"version {version} is a compressed variant; promote its parent")
    with registry_lock(ws):
        champion = alias_version(client, cfg.model_name, CHAMPION)
        if champion == version:
            raise ValueError(f"version {version} is already {CHAMPION}")
        score = score_registered(cfg.model_name, version, params, ws)
        champion_score = (
            score_registered(cfg.model_name, champion, params, ws) if champion else None
        )
        latency = tags.get("mloop.latency_p95_ms")
        size = tags.get("mloop.size_mb")
        decision = decide(
            score,
            champion_score,
            cfg,
            champion,
            float(latency) if latency else None,
            float(size) if size else None,
        )
        if force and not decision.promote:
            decision = Decision(
                True,
                f"forced over: {decision.reason}",
                decision.metric,
                score,
                champion_score,
                champion,
                decision.reasons,
                forced=True,
            )
        if decision.promote:
            _crown(client, cfg.model_name, version)
        _record(client, cfg.model_name, version, decision, ws)
    return decision


def rollback(params: Params, ws: Workspace) -> tuple[str, str]:
    """``champion`` back to the previous champion; returns ``(from, to)`` versions."""
    import mlflow
    from mlflow.exceptions import MlflowException

    name = params.register_.model_name
    client = mlflow.MlflowClient()
    with registry_lock(ws):
        try:
            history = _history(client, name)
        except MlflowException:
            raise RuntimeError(f"{name}: no registered model yet, nothing to roll back") from None
        current = alias_version(client, name, CHAMPION)
        if current is None or len(history) < 2 or history[-1] != current:
            raise RuntimeError(
                f"{name}: no previous champion to roll back to"
                f" (history {history}, champion {current})"
            )
        previous = history[-2]
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[:-1]))
        client.set_registered_model_alias(name, CHAMPION, previous)
        follow_champion(client, name, previous)
        client.set_model_version_tag(
            name, current, "mloop.rolled_back", time.strftime("%Y-%m-%dT%H:%M:%S%z")
        )
    return current, previous


def register_compressed(name: str, parent: str, uri: str | None, variant) -> str | None:
    """Register the shipped variant of champion ``parent`` as alias ``champion-compressed``;
    with no variant, remove the alias (it must never point at another champion's variant)."""
    import mlflow

    client = mlflow.MlflowClient()
    if uri is None:
        if alias_version(client, name, COMPRESSED) is not None:
            client.delete_registered_model_alias(name, COMPRESSED)
        return None
    version = str(
        mlflow.register_model(
            uri,
            name,
            tags={
                "mloop.kind": "compressed",
                "mloop.parent_version": parent,
                "mloop.variant": variant.name,
                "mloop.format": variant.format,
                "test_accuracy": f"{variant.accuracy:.6f}",
                "mloop.speedup": f"{variant.speedup:.3f}",
                "mloop.size_mb": f"{variant.size_bytes / 1e6:.4f}",
            },
        ).version
    )
    client.set_registered_model_alias(name, COMPRESSED, version)
    return version


def compressed_version(client, name: str) -> str | None:
    """The ``champion-compressed`` version, only if it was made from the current champion."""
    version = alias_version(client, name, COMPRESSED)
    if version is None:
        return None
    parent = client.get_model_version(name, version).tags.get("mloop.parent_version")
    return version if parent == alias_version(client, name, CHAMPION) else None


def models_table(name: str) -> list[dict[str, str]]:
    """``mloop models``: every version with aliases, metric, gate verdict and lineage."""
    import mlflow

    client = mlflow.MlflowClient()
    rows = []
    for mv in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version)):
        tags = mv.tags
        try:
            run_tags = client.get_run(mv.run_id).data.tags if mv.run_id else {}
        except Exception:  # a deleted run: the version still lists
            run_tags = {}
        rows.append(
            {
                "version": str(mv.version),
                "kind": tags.get("mloop.kind", "trained")
                + (
                    f" of v{tags['mloop.parent_version']}" if "mloop.parent_version" in tags else ""
                ),
                # search results carry no aliases in every store: ask for each version
                "aliases": ",".join(sorted(client.get_model_version(name, mv.version).aliases))
                or "-",
                "test_accuracy": tags.get("test_accuracy", "-")[:6],
                "gate": tags.get("mloop.gate.decision", "-")
                + (" (forced)" if tags.get("mloop.gate.forced") == "True" else ""),
                "data": run_tags.get("mloop.data_version", "-")[:12],
                "commit": run_tags.get("mloop.git_commit", "-")[:8],
                "created": time.strftime(
                    "%Y-%m-%d %H:%M", time.localtime(mv.creation_timestamp / 1e3)
                ),
            }
        )
    return rows


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
