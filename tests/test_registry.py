"""The promotion gate: a pure decision, then the same gate on a real MLflow registry."""

import json

import mlflow
import pytest

from components.core.config import RegisterConfig
from components.register.aliases import CHAMPION, alias_version
from components.register.commands import models_table, promote, rollback
from components.register.gate import decide
from components.register.stage import register_stage


def test_first_version_is_promoted():
    assert decide(0.5, None, RegisterConfig()).promote


@pytest.mark.parametrize(
    ("challenger", "champion", "margin", "promote"),
    [(0.97, 0.98, 0.0, False), (0.98, 0.98, 0.0, False), (0.99, 0.98, 0.0, True),
     (0.985, 0.98, 0.01, False), (0.995, 0.98, 0.01, True)],
)  # fmt: skip
def test_gate_needs_a_strictly_better_challenger(challenger, champion, margin, promote):
    decision = decide(challenger, champion, RegisterConfig(min_improvement=margin), "1")
    assert decision.promote is promote
    assert decision.champion_score == champion and decision.champion_version == "1"


@pytest.mark.parametrize(
    ("challenger", "champion", "promote"),
    [(0.30, 0.25, False), (0.25, 0.25, False), (0.20, 0.25, True)],
)
def test_on_log_loss_the_lower_challenger_wins(challenger, champion, promote):
    decision = decide(challenger, champion, RegisterConfig(metric="test_log_loss"), "1")
    assert decision.promote is promote and "lower is better" in decision.reason


def test_gate_on_the_registry(trained_copy):
    """The gate scores challenger and champion itself, by the same code on the same rows: a
    claimed score in metrics.json moves nothing. A challenger no better stays challenger;
    one that clears the margin becomes champion. Both are recorded."""
    ws, params = trained_copy
    client = mlflow.MlflowClient()
    name = params.registry.model_name
    true_metrics = json.loads(ws.metrics.read_text())

    first = register_stage(params, ws)
    assert first.decision.promote and CHAMPION in first.aliases
    champion_score = first.decision.challenger_score

    # The same weights again, claiming a better score: scored here, they tie and stay out
    ws.metrics.write_text(json.dumps({**true_metrics, "test_accuracy": champion_score + 0.05}))
    claimed = register_stage(params, ws)
    assert not claimed.decision.promote
    assert claimed.decision.challenger_score == pytest.approx(champion_score)
    assert claimed.decision.champion_score == pytest.approx(champion_score)
    assert alias_version(client, name, CHAMPION) == first.version
    assert alias_version(client, name, "challenger") == claimed.version
    tags = client.get_model_version(name, claimed.version).tags
    assert tags["mloop.gate.decision"] == "rejected"
    ws.metrics.write_text(json.dumps(true_metrics))

    # A margin a tie clears: the challenger moves up
    lenient = params.model_copy(update={"registry": params.registry.model_copy(
        update={"min_improvement": -0.01})})  # fmt: skip
    better = register_stage(lenient, ws)
    assert better.decision.promote
    assert alias_version(client, name, CHAMPION) == better.version
    assert client.get_model_version(name, better.version).tags["mloop.gate.decision"] == "promoted"


def test_latency_and_size_limits_stop_a_better_challenger():
    cfg = RegisterConfig(max_latency_p95_ms=1.0, max_size_mb=2.0)
    slow = decide(0.99, 0.98, cfg, "1", latency_p95_ms=1.5, size_mb=1.0)
    assert not slow.promote and "latency p95 1.500 ms vs limit 1.0 ms" in slow.reason
    big = decide(0.99, None, cfg, None, latency_p95_ms=0.5, size_mb=3.0)
    assert not big.promote and "size 3.000 MB" in big.reason
    assert decide(0.99, 0.98, cfg, "1", latency_p95_ms=0.5, size_mb=1.0).promote


def test_promote_with_the_gate_force_and_rollback(trained_copy):
    ws, params = trained_copy
    client = mlflow.MlflowClient()
    name = params.registry.model_name
    start = register_stage(params, ws).version  # the first version: champion
    assert alias_version(client, name, CHAMPION) == start
    true_metrics = json.loads(ws.metrics.read_text())
    # A challenger the gate refused (claimed worse): the same model, so no better either.
    ws.metrics.write_text(json.dumps({**true_metrics, "test_accuracy": 0.1}))
    refused = register_stage(params, ws)
    ws.metrics.write_text(json.dumps(true_metrics))
    assert not refused.decision.promote

    decision = promote(params, ws, refused.version)  # equal scores: still no
    assert not decision.promote and alias_version(client, name, CHAMPION) == start
    forced = promote(params, ws, refused.version, force=True)
    assert forced.promote and forced.forced and "forced over" in forced.reason
    assert alias_version(client, name, CHAMPION) == refused.version
    assert client.get_model_version(name, refused.version).tags["mloop.gate.forced"] == "True"
    gate = json.loads(ws.report("gate.json").read_text())
    assert gate["version"] == refused.version and gate["decision"]["forced"] is True

    assert rollback(params, ws) == (refused.version, start)
    assert alias_version(client, name, CHAMPION) == start
    with pytest.raises(LookupError):
        promote(params, ws, "999")
    rows = {row["version"]: row for row in models_table(name)}
    assert "champion" in rows[start]["aliases"].split(",")
    assert "challenger" in rows[refused.version]["aliases"].split(",")
    assert rows[refused.version]["gate"] == "promoted (forced)"


@pytest.mark.slow
def test_two_flows_registering_at_once_leave_the_better_champion(tmp_path, monkeypatch):
    """Three workspaces, one registry. With a champion in place, the register stages of two
    better models run at the same moment: each scores the champion inside the gate."""
    import os
    import subprocess
    import sys

    import yaml

    from components.core.paths import Workspace
    from components.evaluate.stage import evaluate_stage
    from components.prepare.stage import prepare_stage
    from components.train.stage import train_stage
    from tests.helpers import REPO, small_params

    store = f"sqlite:///{tmp_path / 'shared.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    workspaces = {}
    for label, epochs in (("weak", 1), ("mid", 3), ("strong", 8)):
        ws = Workspace(tmp_path / label)
        ws.state.mkdir(parents=True)
        params = small_params(train={"epochs": epochs})
        ws.params.write_text(yaml.safe_dump(params.model_dump(by_alias=True)))
        for stage in (prepare_stage, train_stage, evaluate_stage):
            stage(params, ws)
        workspaces[label] = ws

    def register(label):
        return subprocess.Popen(
            [sys.executable, "-m", "pipelines.register"], cwd=REPO,
            env={**os.environ, "MLOOP_WORKSPACE": str(workspaces[label].root)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def result(label):
        return json.loads(workspaces[label].report("registry.json").read_text())

    first = register("weak")
    assert first.wait(timeout=300) == 0, first.stdout.read()
    weak = result("weak")["version"]
    procs = {label: register(label) for label in ("mid", "strong")}
    for proc in procs.values():
        assert proc.wait(timeout=300) == 0, proc.stdout.read()
    mid, strong = result("mid"), result("strong")
    assert strong["decision"]["challenger_score"] > mid["decision"]["challenger_score"]
    assert mid["decision"]["challenger_score"] > result("weak")["decision"]["challenger_score"]
    client = mlflow.MlflowClient()
    assert alias_version(client, "digits-classifier", CHAMPION) == strong["version"]
    # The lock made them decide in turn: one was measured against the weak champion, the
    # other against the one that went first.
    seen = {r["version"]: r["decision"]["champion_version"] for r in (mid, strong)}
    went_first = next(v for v, champion in seen.items() if champion == weak)
    assert sorted(seen.values()) == sorted([weak, went_first])
    history = json.loads(
        client.get_registered_model("digits-classifier").tags["mloop.champion_history"]
    )
    assert history[0] == weak and history[-1] == strong["version"]
