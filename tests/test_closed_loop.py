"""The closed loop, end to end, with the real servers.

``mloop serve`` serves the champion; clean traffic: no drift, no retrain; shifted
traffic: drift, the ``monitor`` flow runs ``retrain``, the new challenger goes
through the gate, and once promoted the service restarts on it and answers with
the new version. A second drift inside the cool-down does not retrain again.
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
from components.core.paths import Workspace
from components.monitor.stage import drifted
from components.package.inputs import EXAMPLE_INPUT
from components.prepare.splits import load_split
from components.serve import traffic
from tests.helpers import REPO, free_port

pytestmark = pytest.mark.slow


def _write_params(ws: Workspace, epochs: int) -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train"]["epochs"] = epochs
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


def _send(port: int, ws: Workspace, kind: str, n: int) -> traffic.TrafficResult:
    params = load_params(ws.params)
    test = load_split(ws.prepared, "test")
    images = drifted(test.x, kind, params.monitor, 16.0, np.random.default_rng(0))
    result = traffic.run(f"http://127.0.0.1:{port}", images, test.y, rate=100,
                         duration_s=n / 100, drift=kind, feedback=0.5)  # fmt: skip
    assert result.ok == n and not result.errors, result.summary()
    return result


def test_drift_retrains_promotes_and_the_service_follows(tmp_path, monkeypatch):
    from flows.monitor import monitor
    from flows.retrain import retrain

    ws = Workspace(tmp_path / "ws")
    ws.root.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws.mlflow_db}")
    monkeypatch.setenv("MLOOP_INFERENCE_LOG", str(ws.inference_log))
    _write_params(ws, epochs=1)  # a weak first champion, so the retrain can beat it
    first = retrain(params_file=str(ws.params), workspace=str(ws.root))
    assert first.registration.version == "1"
    served = first.bento.model_version

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "--workspace", str(ws.root), "serve",
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ.copy(),
        start_new_session=True, cwd=REPO,
    )  # fmt: skip
    try:
        for line in server.stdout:  # "mloop: ready" once the Bento answers
            if b"ready" in line or server.poll() is not None:
                break
        assert _served_version(port) == served

        _send(port, ws, "clean", 300)
        clean = monitor(params_file=str(ws.params), workspace=str(ws.root))
        assert clean.rows >= 300 and clean.drift is not None
        assert not clean.drift.drifted and not clean.retrain
        assert clean.labelled > 100 and clean.accuracy is not None
        client = mlflow.MlflowClient()
        assert len(client.search_model_versions("name='digits-classifier'")) == 2  # 1 + onnx

        _write_params(ws, epochs=8)  # what the retrain will train with
        _send(port, ws, "shift", 300)
        shifted = monitor(params_file=str(ws.params), workspace=str(ws.root))
        assert shifted.first_id == clean.last_id + 1  # only the new traffic
        assert shifted.drift.drifted and shifted.retrain, shifted.summary()
        champion = client.get_model_version_by_alias("digits-classifier", "champion")
        assert str(champion.version) == "3", "the better retrained model passed the gate"
        gate = json.loads((ws.reports / "gate.json").read_text())
        assert gate["decision"]["promote"] is True
        new = json.loads((ws.reports / "bento.json").read_text())["model_version"]
        assert new != served

        deadline = time.monotonic() + 180  # mloop serve restarts on the new Bento
        version = None
        while time.monotonic() < deadline:
            try:
                version = _served_version(port)
            except OSError:
                version = None
            if version == new:
                break
            time.sleep(1)
        assert version == new

        _send(port, ws, "shift", 300)
        again = monitor(params_file=str(ws.params), workspace=str(ws.root))
        assert again.drift.drifted and not again.retrain and "cool-down" in again.reason
        assert again.model_versions[new] >= 300  # (and the probes that waited for the restart)
        assert len(client.search_model_versions("name='digits-classifier'")) == 4
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)


def test_deploy_serves_the_schedules_and_the_monitor_runs_on_its_interval(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.root.mkdir()
    _write_params(ws, epochs=1)
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
        assert "retrain/scheduled" in listed and "monitor/drift-check" in listed, listed
        assert "COMPLETED" in runs  # the monitor ran on its schedule (no log yet: it waits)
    finally:
        os.killpg(deploy.pid, 2)  # Ctrl-C: the command stops its Prefect server too
        try:  # on 2 busy cores the runner and the server take their time to shut down
            out = deploy.communicate(timeout=180)[0].decode()
        except subprocess.TimeoutExpired:
            os.killpg(deploy.pid, 9)
            out = deploy.communicate()[0].decode()
            pytest.fail(f"Ctrl-C did not stop mloop deploy within 180 s:\n{out[-4000:]}")
    assert "starting a Prefect server" in out
    assert deploy.returncode == 0 and "mloop: SIGINT: stopping the runner" in out, out[-4000:]
    assert "mloop: stopped" in out
    with pytest.raises(OSError):  # its Prefect server is gone too
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
