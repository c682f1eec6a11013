"""Explanations through the whole loop, on a table with a planted informative column and a
planted noise column: the evaluate stage's global explanation (reports, MLflow, the
registered version's tag, ``mloop models``), POST /explain on the served network, and the
production monitor's "the model now leans on X" on traffic where that column changed."""

import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest

from components.core.inference_log import InferenceLog
from components.core.predict import load_registered
from components.core.splits import load_meta, load_split
from tests.helpers import REPO, looped, post, repo_params, served

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def planted_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """``y`` is the sign of ``signal`` (some of ``weak_a``, ``weak_b`` and the colour too);
    ``noise`` carries nothing."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 4)), columns=["signal", "noise", "weak_a", "weak_b"])
    frame["colour"] = rng.choice(["blue", "green", "red"], n)
    logit = 3 * frame["signal"] + 0.8 * (
        frame["weak_a"] + frame["weak_b"] + (frame["colour"] == "red")
    )
    frame["y"] = np.where(logit + rng.normal(scale=0.3, size=n) > 0, "yes", "no")
    return frame


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    planted_frame(3000).to_csv(root / "planted.csv", index=False)
    raw = repo_params()
    raw["data"].update(source="tabular", tabular={"path": "planted.csv", "label": "y"})
    raw["train"].update(epochs=8, baseline="none")
    raw["register"]["model_name"] = "planted"
    raw["package"]["service_name"] = "planted"
    raw["compress"].update(variants=["onnx"], latency_repeats=10)
    with looped(root, raw) as (ws, state):
        assert state.is_completed(), state.message
        yield ws, state.result()


def test_the_global_explanation_is_written_logged_and_carried_by_the_version(planted):
    ws, summary = planted
    explained = json.loads((ws.reports / "explanations.json").read_text())
    network = explained["models"]["network"]
    order = network["top"]
    assert order[0] == "signal" and order.index("noise") >= len(order) - 2, order
    assert network["completeness"]["within_tolerance"] >= 0.95, network["completeness"]
    assert {c["column"] for c in network["columns"]} == {"signal", "noise", "weak_a", "weak_b",
                                                        "colour"}  # fmt: skip
    signal = next(c for c in network["columns"] if c["column"] == "signal")
    assert signal["permutation"] > 0.2  # shuffling it costs accuracy; the noise does not
    noise = next(c for c in network["columns"] if c["column"] == "noise")
    assert abs(noise["permutation"]) < 0.02
    assert (ws.reports / "explanations" / "network.png").read_bytes()[:4] == b"\x89PNG"
    client = mlflow.MlflowClient()
    logged = {a.path for a in client.list_artifacts(summary.train.run_id, "explanations")}
    assert logged == {"explanations/network.json", "explanations/network.png"}
    version = client.get_model_version("planted", summary.registration.version)
    assert version.tags["mloop.explain"].startswith("signal ")
    assert float(version.tags["mloop.explain.complete"]) >= 0.95
    listed = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--workspace", str(ws.root), "models"],
        capture_output=True, text=True, check=True, cwd=REPO,
        env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{ws.mlflow_db}"},
    ).stdout  # fmt: skip
    assert "relies on" in listed.splitlines()[0] and "signal 0." in listed
    gate = json.loads((ws.reports / "gate.json").read_text())
    assert gate["relies_on"]["challenger"] == version.tags["mloop.explain"]


def test_explain_answers_rows_per_source_column_within_limits(planted, tmp_path):
    ws, summary = planted
    rows = [
        {"signal": 2.0, "noise": 0.1, "weak_a": 0.0, "weak_b": 0.0, "colour": "red"},
        {"signal": -0.1, "noise": -2.0, "weak_a": 1.5, "weak_b": 0.3, "colour": "blue"},
    ]
    with served(summary.bento.bento_tag, tmp_path / "log.sqlite",
                MLOOP_EXPLAIN_MAX_BATCH="2") as (port, _):  # fmt: skip
        status, answer = post(port, json.dumps({"rows": rows}).encode(), "explain")
        assert status == 200, answer
        predicted = post(port, json.dumps({"rows": rows}).encode(), "predict_rows")[1]
        assert answer["predictions"] == predicted["predictions"]
        first = answer["explanations"][0]
        assert first["class"] == "yes" and first["attributions"][0]["column"] == "signal"
        assert (
            first["attributions"][0]["value"] == 2.0 and first["attributions"][0]["attribution"] > 0
        )
        colour = next(a for a in first["attributions"] if a["column"] == "colour")
        assert colour["value"] == "red"  # the one-hot columns, summed into their source
        for found in answer["explanations"]:
            total = sum(a["attribution"] for a in found["attributions"])
            change = found["completeness"]["change"]
            assert abs(total - change) <= 0.05 * max(abs(change), 0.01) + 1e-6
        three = json.dumps({"rows": rows + rows[:1]}).encode()
        assert post(port, three, "explain")[0] == 413
        status, refused = post(port, json.dumps({"rows": [{**rows[0], "colour": "pink"}]})
                               .encode(), "explain")  # fmt: skip
        assert status == 400 and "colour" in json.dumps(refused)
        assert post(port, json.dumps({"texts": ["hi"]}).encode(), "explain")[0] == 400


def test_the_monitor_says_the_model_now_leans_on_another_column(planted, monkeypatch):
    """Traffic whose ``signal`` is stuck at one value and whose ``weak_a`` is five times as
    wide: the champion's answers now rest on weak_a, and the monitor says so."""
    from components.core.config import load_params
    from components.monitor.production import check_production

    ws, _ = planted
    params = load_params(ws.params)
    x = load_split(ws.prepared, "test").x[:300].copy()
    columns = load_meta(ws.prepared)["schema"]["encoded"]
    signal, weak = columns.index("signal"), columns.index("weak_a")
    x[:, signal] = 0.05
    x[:, weak] *= 5
    classes = load_meta(ws.prepared)["classes"]
    answers = load_registered("models:/planted@champion")(x).argmax(1)
    log = InferenceLog(ws.inference_log)
    for i in range(0, 300, 10):
        log.append(f"moved-{i}", "1", x[i : i + 10], [classes[c] for c in answers[i : i + 10]],
                   np.ones(10))  # fmt: skip
    log.close()
    monkeypatch.setenv("MLOOP_INFERENCE_LOG", str(ws.inference_log))
    check = check_production(params, ws)
    assert check.leaning.startswith("the model now leans on weak_a"), check.leaning
    assert "less on signal" in check.leaning and check.leaning in check.summary()
    moved = {m["feature"]: m for m in check.leaning_moved}
    assert moved["signal"]["now"] < moved["signal"]["reference"] / 2
    report = json.loads((ws.reports / "production_drift.json").read_text())
    assert report["leaning"] == check.leaning
