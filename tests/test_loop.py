"""End to end: the ``retrain`` flow under a real Prefect server, then its Bento served over HTTP."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from components import inference_log, serving
from components.compression import REFERENCES
from components.data import load_split
from components.paths import Workspace
from components.service import EXAMPLE_INPUT
from tests.conftest import REPO, free_port
from tests.test_infra import hpa_metric

pytestmark = pytest.mark.slow


def _write_params(ws: Workspace, **overrides) -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train"]["epochs"] = 10
    raw["compress"].update(latency_repeats=20, finetune_epochs=2)
    raw["compress"]["distill"]["epochs"] = 5
    for section, values in overrides.items():
        raw[section].update(values)
    ws.params.write_text(yaml.safe_dump(raw))


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """One whole run of the flow on the built-in data."""
    from flows.retrain import retrain

    ws = Workspace(tmp_path_factory.mktemp("loop"))
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws.mlflow_db}")
    ws.state.mkdir()
    _write_params(ws)
    state = retrain(params_file=str(ws.params), workspace=str(ws.root), return_state=True)
    yield ws, state
    mp.undo()


def test_flow_completes_and_promotes_a_champion(loop):
    import mlflow

    ws, state = loop
    assert state.is_completed(), state.message
    summary = state.result()
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("digits-classifier", "champion")
    assert str(champion.version) == summary.registration.version == "1"
    metrics = json.loads(ws.metrics.read_text())
    assert metrics["test_accuracy"] > 0.95
    assert (ws.reports / "confusion_matrix.png").stat().st_size > 1000
    assert summary.drift.verdict("clean") is False
    assert summary.drift.verdict("noise") is True and summary.drift.verdict("shift") is True
    for name in ("drift_clean.html", "drift_shift.html", "compression.json", "compression.md",
                 "validation.json", "gate.json"):  # fmt: skip
        assert (ws.reports / name).is_file(), name
    assert (ws.reports / "compression.png").stat().st_size > 5000


def test_the_fastest_variant_within_budget_ships_as_champion_compressed(loop):
    import mlflow

    ws, state = loop
    compression, bento = state.result().compression, state.result().bento
    assert compression.chosen is not None, compression.summary()
    shipped = compression.variant(compression.chosen)
    assert shipped.within_budget and shipped.speedup > 1
    assert shipped.name not in REFERENCES  # the no-teacher baseline never ships
    fastest = max(v.speedup for v in compression.variants
                  if v.within_budget and v.name not in REFERENCES)  # fmt: skip
    assert shipped.speedup >= 0.9 * fastest  # the fastest, up to timing noise
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("digits-classifier", "champion-compressed")
    assert str(version.version) == compression.registered_version == bento.model_version
    assert version.tags["mloop.parent_version"] == "1" and bento.alias == "champion-compressed"
    model = mlflow.pyfunc.load_model("models:/digits-classifier@champion-compressed")
    test = load_split(ws.prepared, "test")
    out = model.predict(test.x)
    proba = np.asarray(next(iter(out.values())) if isinstance(out, dict) else out)
    assert float((proba.argmax(1) == test.y).mean()) == pytest.approx(shipped.accuracy)


def test_the_students_are_runs_nested_under_the_compression_run(loop):
    import mlflow

    ws, state = loop
    compression = state.result().compression
    runs = mlflow.search_runs(experiment_names=["digits"], output_format="list")
    (parent,) = [r for r in runs if r.info.run_name == "compress-v1"]
    students = {r.info.run_name: r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}  # fmt: skip
    assert set(students) == {"distill", "student-baseline"}
    distill, baseline = students["distill"], students["student-baseline"]
    assert distill.data.params["teacher.version"] == "1"
    assert distill.data.params["temperature"] == "4.0" and distill.data.params["alpha"] == "0.7"
    assert baseline.data.params["alpha"] == "0.0"
    teacher, student = (int(distill.data.params[f"{k}.parameters"]) for k in ("teacher", "student"))
    assert student <= teacher / 4
    assert student == compression.variant("distilled").parameters
    curve = mlflow.MlflowClient().get_metric_history(distill.info.run_id, "val/acc")
    assert [m.step for m in curve] == [1, 2, 3, 4, 5]  # one point per epoch
    assert "train/soft_loss" in distill.data.metrics  # the teacher's term was trained on
    assert "train/soft_loss" not in baseline.data.metrics


def test_flow_run_is_recorded_completed_in_prefect(loop):
    from prefect.client.orchestration import get_client

    _, state = loop
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.state.is_completed()
    assert run.name and run.flow_id


def test_registered_champion_loads_and_scores_like_metrics_json(loop):
    import mlflow

    ws, _ = loop
    model = mlflow.pyfunc.load_model("models:/digits-classifier@champion")
    test = load_split(ws.prepared, "test")
    accuracy = float((np.asarray(model.predict(test.x)).argmax(1) == test.y).mean())
    assert accuracy == pytest.approx(json.loads(ws.metrics.read_text())["test_accuracy"])


def _post(port: int, body: bytes, path: str = "predict", token: str | None = None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"http://127.0.0.1:{port}/{path}", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@contextlib.contextmanager
def _served(tag: str, log: Path, **env):
    """``bentoml serve TAG`` on a free loopback port, logging to ``log``; yields the port."""
    port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOOP_INFERENCE_LOG", str(log))
        for key, value in env.items():
            mp.setenv(key, value)
        server = serving.start(tag, "127.0.0.1", port, log.with_suffix(".out"))
    try:
        serving.wait_ready("127.0.0.1", port, server, log_file=log.with_suffix(".out"))
        yield port, server
    finally:
        serving.stop(server)


def test_bento_is_in_the_store_and_serves_over_http(loop, tmp_path):
    import bentoml

    ws, state = loop
    tag = state.result().bento.bento_tag
    assert tag in {str(b.tag) for b in bentoml.bentos.list()}
    log = tmp_path / "inference.sqlite"
    with _served(tag, log) as (port, _):
        status, body = _post(port, json.dumps({"images": EXAMPLE_INPUT}).encode())
        assert status == 200
        bento = state.result().bento  # the compressed version of champion 1
        assert body["model_version"] == bento.model_version != "1"
        assert body["model_alias"] == "champion-compressed"
        assert body["predictions"][0]["class"] == 0
        assert len(body["predictions"][0]["probabilities"]) == 10
        first = body["request_id"]

        status, body = _post(port, json.dumps({"images": [EXAMPLE_INPUT] * 3}).encode())
        assert status == 200 and len(body["predictions"]) == 3
        assert body["request_id"] != first

        for bad in (b'{"images": [[1, 2]]}', b'{"images": "x"}', b"{not json", b"{}",
                    json.dumps({"images": [[99] * 8] * 8}).encode()):  # fmt: skip
            status, _ = _post(port, bad)
            assert 400 <= status < 500, bad

        # Feedback: true labels attach to a logged request; wrong ones are refused.
        feedback = {"request_id": body["request_id"], "labels": [0, 0, 6]}
        assert _post(port, json.dumps(feedback).encode(), "feedback") == (
            200, {"request_id": body["request_id"], "labelled": 3})  # fmt: skip
        for bad in ({"request_id": "nope", "labels": [0]}, {**feedback, "labels": [0]},
                    {**feedback, "labels": [0, 0, 42]}):  # fmt: skip
            status, answer = _post(port, json.dumps(bad).encode(), "feedback")
            assert 400 <= status < 500, (bad, answer)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            exposed = r.read().decode()
        assert "bentoml_service_request_total" in exposed
        assert hpa_metric() in exposed  # what infra/k8s/bento.yaml's autoscaler reads

    table = inference_log.read(log).table  # every answered input, committed
    assert table["request_id"].tolist() == [first] + [body["request_id"]] * 3
    assert set(table["model_version"]) == {bento.model_version}
    assert table["label"].tolist() == [None, "0", "0", "6"]
    assert table["prediction"].iloc[0] == "0" and 0 < table["confidence"].iloc[0] <= 1


def test_with_a_token_set_requests_without_it_get_401(loop, tmp_path):
    _, state = loop
    body = json.dumps({"images": EXAMPLE_INPUT}).encode()
    with _served(state.result().bento.bento_tag, tmp_path / "log.sqlite",
                 MLOOP_API_TOKEN="s3cret") as (port, _):  # fmt: skip
        assert _post(port, body)[0] == 401
        assert _post(port, body, token="wrong")[0] == 401
        assert _post(port, body, token="s3cret")[0] == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
            assert r.status == 200  # probes stay open


def test_schemathesis_finds_no_server_error(loop, tmp_path):
    """Property-based requests from the service's own OpenAPI schema: never a 5xx."""
    _, state = loop
    schemathesis = Path(sys.executable).with_name("schemathesis")
    with _served(state.result().bento.bento_tag, tmp_path / "log.sqlite") as (port, _):
        done = subprocess.run(
            [str(schemathesis), "run", f"http://127.0.0.1:{port}/docs.json",
             "--checks", "not_a_server_error", "--max-examples", "40", "--seed", "1",
             "--include-method", "POST"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,  # its cache goes there
        )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:]
    assert "/predict" in done.stdout and "/feedback" in done.stdout


def test_every_acknowledged_request_survives_kill_9(loop, tmp_path):
    """Concurrent clients, the server killed with SIGKILL mid-load: no answered request lost."""
    _, state = loop
    log = tmp_path / "log.sqlite"
    acknowledged: list[str] = []
    body = json.dumps({"images": EXAMPLE_INPUT}).encode()
    with _served(state.result().bento.bento_tag, log) as (port, server):
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                try:
                    status, answer = _post(port, body)
                except OSError:  # the server is gone
                    return
                if status == 200:
                    acknowledged.append(answer["request_id"])

        clients = [threading.Thread(target=client) for _ in range(8)]
        for c in clients:
            c.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(server.pid, signal.SIGKILL)  # mid-load: requests are in flight
        server.wait(timeout=30)
        stop.set()
        for c in clients:
            c.join(timeout=60)
    assert len(acknowledged) >= 200
    logged = set(inference_log.read(log).table["request_id"])
    assert set(acknowledged) <= logged, f"{len(set(acknowledged) - logged)} acknowledged lost"


def test_failing_validation_stops_the_flow_before_training(tmp_path, monkeypatch):
    import mlflow

    from flows.retrain import retrain

    ws = Workspace(tmp_path / "bad")
    ws.root.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws.mlflow_db}")
    _write_params(ws, validate={"pixel_max": 10.0})  # the digits reach 16: the suite must fail
    state = retrain(params_file=str(ws.params), workspace=str(ws.root), return_state=True)
    assert state.is_failed()
    assert "data validation failed" in state.message
    assert "expect_column_values_to_be_between on samples.max" in state.message
    summary = json.loads((ws.reports / "validation.json").read_text())
    assert summary["passed"] is False
    assert any(f["column"] == "max" for f in summary["failures"])
    assert not ws.model_file.exists()
    client = mlflow.MlflowClient()
    assert client.search_registered_models() == []
    # The failed gate is on record in MLflow: a FAILED run holding the reports.
    (run,) = mlflow.search_runs(experiment_names=["digits"], output_format="list")
    assert run.info.run_name == "validate" and run.info.status == "FAILED"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"validation.json", "validation.html"} <= artifacts


@pytest.mark.parametrize("kind", ["tabular", "images"])
def test_the_loop_on_a_users_own_data(tmp_path, monkeypatch, kind):
    """A CSV table and a folder of images, given only by params, go round the whole loop."""
    import bentoml
    import mlflow

    from flows.retrain import retrain
    from tests.test_validation import make_images, make_table

    ws = Workspace(tmp_path / kind)
    ws.root.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws.mlflow_db}")
    if kind == "tabular":
        make_table(n=600).to_csv(ws.root / "customers.csv", index=False)
        data = {"source": "tabular", "tabular": {"path": "customers.csv", "label": "y"}}
    else:
        make_images(ws.root / "shapes", per_class=50)
        data = {"source": "images", "images": {"path": "shapes", "size": [12, 12]}}
    _write_params(ws, data=data, register={"model_name": f"own-{kind}"},
                  package={"service_name": f"own_{kind}"})  # fmt: skip
    state = retrain(params_file=str(ws.params), workspace=str(ws.root), return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    run = mlflow.get_run(summary.train.run_id)
    assert run.data.tags["mloop.data_name"] == (
        "tabular-customers" if kind == "tabular" else "images-shapes"
    )  # noqa: E501
    assert run.info.run_name == ("train-mlp" if kind == "tabular" else "train-cnn")
    champion = mlflow.MlflowClient().get_model_version_by_alias(f"own-{kind}", "champion")
    assert str(champion.version) == summary.registration.version
    assert summary.bento.bento_tag in {str(b.tag) for b in bentoml.bentos.list()}
    assert summary.drift.verdict("clean") is False and summary.drift.verdict("shift") is True
    floor = 0.45 if kind == "tabular" else 0.9  # labels a/c of the table are noise by design
    assert summary.evaluation.scores.accuracy > floor


def _chromium() -> str:
    import shutil

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def _render(chromium: str, url: str, profile) -> str:
    """The page as headless Chromium renders it, after its scripts have run."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=20000",
             "--window-size=1600,1000", "--dump-dom", url]  # fmt: skip
    return subprocess.run([chromium, *flags], capture_output=True, text=True, timeout=120).stdout


def test_mlflow_ui_shows_the_runs_and_the_champion_in_a_browser(loop, tmp_path):
    chromium = _chromium()
    import mlflow

    ws, state = loop
    port = free_port()
    ui = serving.start_process(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{ws.mlflow_db}",
         "--host", "127.0.0.1", "--port", str(port)],
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        serving.wait_http(base, ui, timeout_s=120)
        experiment = mlflow.get_experiment_by_name("digits").experiment_id
        runs_page = _render(chromium, f"{base}/#/experiments/{experiment}/runs", tmp_path / "a")
        for name in ("train-cnn", "compress-v1", "monitor"):
            assert name in runs_page, name
        model_page = _render(chromium, f"{base}/#/models/digits-classifier", tmp_path / "b")
        assert "Version 1" in model_page and "champion" in model_page
    finally:
        serving.stop(ui)


def test_packaging_again_reuses_the_imported_model(loop):
    import bentoml

    from components.config import load_params
    from components.packaging import package_stage

    ws, state = loop
    before = {str(m.tag) for m in bentoml.models.list("digits-classifier")}
    again = package_stage(load_params(ws.params), ws)
    assert again.model_tag == state.result().bento.model_tag
    assert {str(m.tag) for m in bentoml.models.list("digits-classifier")} == before
