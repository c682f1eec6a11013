"""The promotion gate: a pure decision, then the same gate on a real MLflow registry."""

import json

import mlflow
import pytest

from components.config import RegisterConfig
from components.registry import CHAMPION, alias_version, decide, register_stage


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


def test_gate_on_the_registry(trained_ws, use_store):
    """Worse challenger: champion stays. Better one: champion moves. Both are recorded."""
    ws, params = trained_ws
    use_store(ws)
    client = mlflow.MlflowClient()
    name = params.register_.model_name
    true_metrics = json.loads(ws.metrics.read_text())

    first = register_stage(params, ws)
    assert first.decision.promote and CHAMPION in first.aliases
    champion_score = first.decision.challenger_score

    # The challenger's claimed score comes from metrics.json; the champion is rescored now.
    ws.metrics.write_text(json.dumps({**true_metrics, "test_accuracy": champion_score - 0.05}))
    worse = register_stage(params, ws)
    assert not worse.decision.promote
    assert alias_version(client, name, CHAMPION) == first.version
    assert alias_version(client, name, "challenger") == worse.version
    assert worse.decision.champion_score == pytest.approx(champion_score)
    tags = client.get_model_version(name, worse.version).tags
    assert tags["mloop.gate.decision"] == "rejected"

    ws.metrics.write_text(json.dumps({**true_metrics, "test_accuracy": champion_score + 0.01}))
    better = register_stage(params, ws)
    assert better.decision.promote
    assert alias_version(client, name, CHAMPION) == better.version
    assert client.get_model_version(name, better.version).tags["mloop.gate.decision"] == "promoted"
    ws.metrics.write_text(json.dumps(true_metrics))
