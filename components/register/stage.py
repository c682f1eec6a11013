"""The ``register`` stage: the trained model as a new version, ``challenger``, through the gate.

Every trained model becomes a version with alias ``challenger``; ``champion``
moves to it only when the gate (``gate.py``) says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from components.core.config import Params
from components.core.paths import Workspace
from components.core.predict import torch_predictor
from components.core.records import read_json, write_json
from components.core.timing import latency_ms
from components.prepare.splits import load_split
from components.register.aliases import CHALLENGER
from components.register.gate import Decision, judge
from components.train.models import load_net
from components.train.stage import read_train_record


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


def measure_weights(ws: Workspace, repeats: int = 200) -> tuple[float, float]:
    """CPU p95 latency at batch 1 (ms) and size (MB) of the trained weights."""
    net, _ = load_net(ws.model_file)
    example = load_split(ws.prepared, "test").x[:1].astype("float32")
    _, p95 = latency_ms(torch_predictor(net), example, repeats)
    return p95, ws.model_file.stat().st_size / 1e6


def register_stage(params: Params, ws: Workspace) -> RegistrationResult:
    import mlflow  # heavy (~10 s): the stage table lists this module without loading it

    cfg = params.registry
    trained = read_train_record(ws)
    metrics = read_json(ws.metrics, "evaluate")
    if cfg.metric not in metrics:  # an AUC on a test split of one class
        raise ValueError(
            f"register.metric {cfg.metric} is undefined on this test split (it holds one class"
            " only): gate on test_accuracy or test_log_loss"
        )
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
    client.set_registered_model_alias(cfg.model_name, CHALLENGER, version)
    decision = judge(
        client, params, ws, version=version,
        challenger_score=lambda: float(metrics[cfg.metric]), limits=(latency_p95, size_mb),
    )  # fmt: skip
    aliases = sorted(client.get_model_version(cfg.model_name, version).aliases)
    result = RegistrationResult(
        cfg.model_name, version, aliases, decision, ws.report("registry.json")
    )
    write_json(result.record, result)
    return result


def read_registration(ws: Workspace) -> dict:
    return read_json(ws.report("registry.json"), "register")
