"""The closed loop, end to end, with the real servers: a loop that learns.

``mloop serve`` serves a champion trained on the digits. Production traffic then
changes domain: the digits come inverted (dark strokes on light, ``16 - x``), the
champion's accuracy on them collapses, and their true labels come back through
``/feedback``. The ``monitor`` flow sees the drift; its retrain harvests the labelled
traffic into a batch, trains on the reference data plus that batch, and the gate
promotes the challenger because it is better on the recent slice (held out of the
batch) without losing on the frozen test split. The service follows, and answers
fresh inverted digits (never trained on, in any form) far better. A scheduled run
with nothing new then trains nothing, and drift with no labels raises the alert.
No parameter changes between the phases.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import mlflow
import numpy as np
import pytest
import yaml

from components.core.config import load_params
from components.core.credentials import first_token
from components.core.kinds.base import drifted
from components.core.paths import Workspace
from components.core.splits import load_split
from components.monitor.production import champion_reference
from components.package.inputs import EXAMPLE_INPUT
from components.prepare.stage import reference_file
from components.serve import traffic
from tests.helpers import REPO, free_port, mloop_serve

pytestmark = pytest.mark.slow


def _write_params(ws: Workspace) -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train"]["epochs"] = 10
    raw["compress"].update(latency_repeats=20, finetune_epochs=2, variants=["onnx"])
    raw["monitor"].update(min_rows=200, cooldown_minutes=60)
    ws.params.write_text(yaml.safe_dump(raw))


def _served_version(port: int) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict",
        data=json.dumps({"images": EXAMPLE_INPUT}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())["model_version"]


def _send(port: int, images, labels, feedback: float, ws=None) -> traffic.TrafficResult:
    """Each image once, at 150 requests/s; ``feedback``: share of answers labelled. A request
    the service turns away at capacity (503, Retry-After: a stall of this shared machine) is
    sent again, as the labelling client of a real service would."""
    result = traffic.run(f"http://127.0.0.1:{port}", images, labels, rate=150,
                         duration_s=len(images) / 150, drift="invert",
                         feedback=feedback, retries=5,
                         labeller_token=first_token(ws.labellers) if ws else None)  # fmt: skip
    assert result.ok == len(images) and not result.errors, result.summary()
    return result


def _inverted(ws: Workspace, split: str):
    params = load_params(ws.params)
    rows = load_split(ws.prepared, split)
    return drifted(rows.x, "invert", params.monitor, 16.0, np.random.default_rng(0)), rows.y


def _wait_for_version(port: int, wanted: str, timeout: float = 180) -> str | None:
    deadline, version = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            version = _served_version(port)
        except OSError:
            version = None
        if version == wanted:
            break
        time.sleep(0.5)
    return version


def test_the_loop_learns_from_labelled_production_traffic(tmp_path, monkeypatch):
    from flows.monitor import monitor
    from flows.retrain import NoNewData, retrain

    ws = Workspace(tmp_path / "ws")
    ws.root.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws.mlflow_db}")
    monkeypatch.setenv("MLOOP_INFERENCE_LOG", str(ws.inference_log))
    _write_params(ws)
    # (a) a champion trained on the original digits
    first = retrain(params_file=str(ws.params), workspace=str(ws.root))
    assert first.registration.version == "1" and first.registration.decision.promote
    frozen_before = first.evaluation.scores.accuracy
    served = first.bento.model_version
    client = mlflow.MlflowClient()

    with mloop_serve(ws.root) as port:
        assert _served_version(port) == served

        # (b) the traffic changes domain: inverted digits (the train split's images, which
        # the champion saw only upright), every answer labelled through /feedback
        images, labels = _inverted(ws, "train")
        before = _send(port, images, labels, feedback=1.0, ws=ws)
        assert before.labelled == len(images)
        old_on_changed = before.accuracy
        assert old_on_changed <= frozen_before - 0.10, (old_on_changed, frozen_before)

        # (c) drift -> harvest -> retrain on it -> the gate promotes on the recent slice
        start = time.perf_counter()
        check = monitor(params_file=str(ws.params), workspace=str(ws.root))
        assert check.drift.drifted and check.retrain and check.alert is None, check.summary()
        assert check.accuracy == pytest.approx(old_on_changed, abs=0.01)
        batches = sorted(p.name for p in ws.batches.iterdir())
        assert batches == ["batch-0001"]
        record = json.loads((ws.batches / "batch-0001" / "batch.json").read_text())
        assert record["source"] == "harvest" and record["rows"] == len(images)
        harvested = (ws.batches / "batch-0001" / "request_ids.txt").read_text().split()
        assert len(harvested) == len(images) == len(set(harvested))  # one row per request here
        gate = json.loads((ws.reports / "gate.json").read_text())["decision"]
        assert gate["promote"], gate["reasons"]
        assert gate["recent_rows"] > 100
        assert gate["recent_challenger"] > gate["recent_champion"] + 0.2, gate
        assert gate["challenger_score"] >= gate["champion_score"] - 0.01, gate  # frozen split
        champion = client.get_model_version_by_alias("digits-classifier", "champion")
        assert champion.tags["mloop.gate.decision"] == "promoted"
        assert "vs" in champion.tags["mloop.gate.recent"]
        run_tags = client.get_run(champion.run_id).data.tags
        assert run_tags["mloop.batches"] == "batch-0001"  # lineage names the batch
        # drift is now measured against the new champion's training data (inverted included)
        reference = champion_reference("digits-classifier", ws)
        kept = np.load(reference_file(ws, run_tags["mloop.data_content"]))
        first_tags = client.get_run(first.train.run_id).data.tags
        old = np.load(reference_file(ws, first_tags["mloop.data_content"]))
        assert np.array_equal(reference, kept) and reference.mean() > old.mean() + 1
        new = json.loads((ws.reports / "bento.json").read_text())["model_version"]
        shipped = client.get_model_version("digits-classifier", new)  # its compressed variant
        assert new != served and shipped.tags["mloop.parent_version"] == str(champion.version)

        # (d) the service answers with the new champion, and it learnt the new domain
        assert _wait_for_version(port, new) == new
        cycle = time.perf_counter() - start
        fresh_images, fresh_labels = _inverted(ws, "test")  # never trained on, in any form
        after = _send(port, fresh_images, fresh_labels, feedback=0.0)
        assert after.versions == {new: len(fresh_images)}
        # then traffic nobody labels drifts again (shifted pixels): for the alert below
        rows = load_split(ws.prepared, "train")
        shifted = drifted(rows.x, "shift", load_params(ws.params).monitor, 16.0,
                          np.random.default_rng(1))  # fmt: skip
        assert _send(port, shifted, rows.y, feedback=0.0).labelled == 0
        lost = frozen_before - old_on_changed
        assert after.accuracy >= old_on_changed + lost / 2, (after.accuracy, old_on_changed)
        figures = {
            "frozen split accuracy, old champion": frozen_before,
            "frozen split accuracy, new champion": gate["challenger_score"],
            "changed traffic accuracy, old champion": old_on_changed,
            "fresh changed traffic accuracy, new champion": after.accuracy,
            "recent slice accuracy, old / new": (gate["recent_champion"],
                                                 gate["recent_challenger"]),
            "drift -> harvest -> retrain -> promote -> redeploy seconds": round(cycle, 1),
        }  # fmt: skip
        print("\nlearning closed loop:", json.dumps(figures, indent=2))
        (ws.reports / "closed_loop.json").write_text(json.dumps(figures, indent=2))

        # (e) a scheduled run with nothing new trains nothing
        versions = len(client.search_model_versions("name='digits-classifier'"))
        state = retrain(params_file=str(ws.params), workspace=str(ws.root), trigger="schedule",
                        return_state=True)  # fmt: skip
        assert state.is_completed() and state.message == "no new data"
        assert isinstance(state.result(), NoNewData)
        assert len(client.search_model_versions("name='digits-classifier'")) == versions

        # drift with no labels to learn from: no retrain, the alert says labels are needed
        unlabelled = monitor(params_file=str(ws.params), workspace=str(ws.root))
        assert unlabelled.drift.drifted, unlabelled.summary()
        assert not unlabelled.retrain and "labels are needed" in unlabelled.alert
        summary = json.loads((ws.reports / "production_drift.json").read_text())
        assert "labels are needed" in summary["alert"]
        assert len(client.search_model_versions("name='digits-classifier'")) == versions


def test_deploy_serves_the_schedules_and_the_monitor_runs_on_its_interval(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.root.mkdir()
    _write_params(ws)
    raw = yaml.safe_load(ws.params.read_text())
    raw["monitor"]["interval_minutes"] = 0.1  # every 6 s
    ws.params.write_text(yaml.safe_dump(raw))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    deploy = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "--workspace", str(ws.root), "deploy",
         "--prefect-port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        cwd=REPO,
    )  # fmt: skip
    cli = {**env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "COLUMNS": "250"}

    def prefect(*command: str) -> str:
        done = subprocess.run([sys.executable, "-m", "prefect", *command], env=cli,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        return done.stdout

    try:
        deadline, listed, runs = time.monotonic() + 240, "", ""
        while time.monotonic() < deadline and deploy.poll() is None:
            listed = prefect("deployment", "ls")
            runs = prefect("flow-run", "ls", "--flow-name", "monitor", "--state", "COMPLETED")
            if "retrain/scheduled" in listed and "COMPLETED" in runs:
                break
            time.sleep(3)
    finally:
        os.killpg(deploy.pid, 2)  # Ctrl-C: the command stops its Prefect server too
        try:  # on 2 busy cores the runner and the server take their time to shut down
            out = deploy.communicate(timeout=180)[0].decode()
        except subprocess.TimeoutExpired:
            os.killpg(deploy.pid, 9)
            out = deploy.communicate()[0].decode()
            pytest.fail(f"Ctrl-C did not stop mloop deploy within 180 s:\n{out[-4000:]}")
    # after the stop, so that a failure shows what the command printed
    assert "retrain/scheduled" in listed and "monitor/drift-check" in listed, listed + out[-4000:]
    assert "COMPLETED" in runs, out[-4000:]  # the monitor ran on its schedule (no log: it waits)
    assert "starting a Prefect server" in out
    assert deploy.returncode == 0 and "mloop: SIGINT: stopping the runner" in out, out[-4000:]
    assert "mloop: stopped" in out
    with pytest.raises(OSError):  # its Prefect server is gone too
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
