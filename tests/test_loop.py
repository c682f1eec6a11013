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

from components.compress.variants import REFERENCES
from components.core import inference_log, process_family
from components.core.paths import Workspace
from components.core.splits import load_split
from components.package.inputs import EXAMPLE_INPUT
from components.serve import supervisor, traffic
from tests.helpers import (
    REPO,
    chromium,
    free_port,
    get,
    hpa_metric,
    labeller,
    looped,
    raw_post,
    render,
    repo_params,
)
from tests.helpers import post as _post
from tests.helpers import served as _served

pytestmark = pytest.mark.slow


def _params(**overrides) -> dict:
    raw = repo_params()
    raw["train"]["epochs"] = 10
    raw["compress"].update(latency_repeats=20, finetune_epochs=2)
    raw["compress"]["distill"]["epochs"] = 5
    for section, values in overrides.items():
        raw[section].update(values)
    return raw


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """One whole run of the flow on the built-in data."""
    with looped(tmp_path_factory.mktemp("loop"), _params()) as run:
        yield run


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
    # The no-teacher baseline is measurement only: off by default (compress.report_baselines).
    assert set(students) == {"distill"}
    distill = students["distill"]
    assert distill.data.params["teacher.version"] == "1"
    assert distill.data.params["temperature"] == "4.0" and distill.data.params["alpha"] == "0.7"
    teacher, student = (int(distill.data.params[f"{k}.parameters"]) for k in ("teacher", "student"))
    assert student <= teacher / 4
    assert student == compression.variant("distilled").parameters
    curve = mlflow.MlflowClient().get_metric_history(distill.info.run_id, "val/acc")
    assert [m.step for m in curve] == [1, 2, 3, 4, 5]  # one point per epoch
    assert "train/soft_loss" in distill.data.metrics  # the teacher's term was trained on


def test_flow_run_is_recorded_completed_in_prefect(loop):
    from prefect.client.orchestration import get_client

    _, state = loop
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.state.is_completed()
    assert run.name and run.flow_id


def test_every_stages_lines_reach_the_flow_runs_log_in_prefect(loop):
    """The stages log through ``logging``; Prefect sends those loggers to the run's log
    (what its UI shows for a run on a worker)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    _, state = loop
    flow_run = state.state_details.flow_run_id
    wanted = ["[prepare]", "[validate]", "  epoch ", "[train]", "[evaluate]", "[register]",
              "[compress]", "[package]", "drift self-test", "[monitor]"]  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run])))
        text = "\n".join(entry.message for entry in logs)
        missing = [w for w in wanted if w not in text]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not missing, f"not in the flow run's log: {missing}\n{text[-2000:]}"


def test_registered_champion_loads_and_scores_like_metrics_json(loop):
    import mlflow

    ws, _ = loop
    model = mlflow.pyfunc.load_model("models:/digits-classifier@champion")
    test = load_split(ws.prepared, "test")
    accuracy = float((np.asarray(model.predict(test.x)).argmax(1) == test.y).mean())
    assert accuracy == pytest.approx(json.loads(ws.metrics.read_text())["test_accuracy"])


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
        assert _post(port, json.dumps(feedback).encode(), "feedback", labeller(log)) == (
            200, {"request_id": body["request_id"], "labelled": 3, "overwritten": 0})  # fmt: skip
        for bad in ({"request_id": "nope", "labels": [0]}, {**feedback, "labels": [0]},
                    {**feedback, "labels": [0, 0, 42]}):  # fmt: skip
            status, answer = _post(port, json.dumps(bad).encode(), "feedback", labeller(log))
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
                 MLOOP_API_TOKEN="s3cret", MLOOP_METRICS_TOKEN="scrape") as (port, _):  # fmt: skip
        assert _post(port, body)[0] == 401
        assert _post(port, body, token="wrong")[0] == 401
        assert (
            _post(port, body, token="scrape")[0] == 401
        )  # the scrape credential reads /metrics only
        assert _post(port, body, token="s3cret")[0] == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
            assert r.status == 200  # probes stay open
        for token, status in ((None, 401), ("scrape", 200), ("s3cret", 200)):
            assert _get(port, "metrics", token)[0] == status, token


def _get(port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    return get(port, f"/{path}", **({"Authorization": f"Bearer {token}"} if token else {}))


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


def test_beyond_capacity_the_service_sheds_load_and_its_probes_stay_up(loop, tmp_path):
    """A burst larger than MLOOP_MAX_IN_FLIGHT allows: the excess is answered 503 with
    Retry-After at once (no timeouts), /readyz answers 200 throughout, every request
    answered 200 is in the log, and ``mloop traffic --retries`` (honouring Retry-After)
    gets a burst answered in full."""
    import asyncio
    from collections import Counter

    import aiohttp

    ws, state = loop
    test = load_split(ws.prepared, "test")
    log = tmp_path / "log.sqlite"
    body = json.dumps({"images": EXAMPLE_INPUT}).encode()
    headers = {"Content-Type": "application/json"}
    with _served(state.result().bento.bento_tag, log, MLOOP_MAX_IN_FLIGHT="1") as (port, _):
        url = f"http://127.0.0.1:{port}"

        async def burst():
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(timeout=timeout) as session:

                async def predict():
                    async with session.post(f"{url}/predict", data=body, headers=headers) as r:
                        return r.status, r.headers.get("Retry-After"), await r.json()

                async def ready():
                    async with session.get(f"{url}/readyz") as r:
                        return r.status

                return await asyncio.gather(
                    asyncio.gather(*(predict() for _ in range(300))),
                    asyncio.gather(*(ready() for _ in range(10))),
                )

        answers, probes = asyncio.run(burst())
        # a client that honours Retry-After gets every request answered in the end
        polite = traffic.run(url, test.x, test.y, rate=2000, duration_s=0.2, retries=10)
    assert polite.ok == polite.sent == 400 and not polite.errors, polite.summary()
    assert polite.retried > 0, polite.summary()
    statuses = Counter(status for status, _, _ in answers)
    assert set(statuses) == {200, 503} and statuses[503] > 0, statuses
    shed = [(after, answer) for status, after, answer in answers if status == 503]
    assert all(after == "1" and "at capacity" in answer["error"] for after, answer in shed)
    assert probes == [200] * 10
    answered = {answer["request_id"] for status, _, answer in answers if status == 200}
    logged = set(inference_log.read(log).table["request_id"])
    assert answered <= logged and len(logged) == len(answered) + polite.ok


def test_the_service_answers_with_the_registered_models_probabilities(loop):
    """The service runs an ONNX model in ONNX Runtime directly, any other through MLflow's
    pyfunc: both answer exactly as the registered model does."""
    import bentoml
    import mlflow

    from components.core.predict import load_registered, served_predictor

    ws, state = loop
    x = load_split(ws.prepared, "test").x
    stored = bentoml.models.get(state.result().bento.model_tag)  # champion-compressed, ONNX
    registered = load_registered("models:/digits-classifier@champion-compressed")
    served = served_predictor(stored.path_of("mlflow_model"))
    assert np.allclose(served(x), registered(x), atol=1e-6)
    champion = mlflow.artifacts.download_artifacts("models:/digits-classifier@champion")
    assert "onnx" not in (Path(champion) / "MLmodel").read_text()  # the pyfunc path
    registered = load_registered("models:/digits-classifier@champion")
    assert np.allclose(served_predictor(champion)(x), registered(x), atol=1e-6)


def test_endpoints_are_bounded(loop, tmp_path):
    """Size limit before parsing, JSON only, numbers in range, errors that do not echo."""
    _, state = loop
    log = tmp_path / "log.sqlite"
    with _served(state.result().bento.bento_tag, log) as (port, server):
        for _ in range(20):  # warm both workers
            assert _post(port, json.dumps({"images": EXAMPLE_INPUT}).encode())[0] == 200
        before = process_family.rss_mb(server.family)
        big = 100 * 2**20
        status, seconds = raw_post(
            port, {"Content-Type": "application/json", "Content-Length": big}, chunks=100
        )
        assert status == 413 and seconds < 1, (status, seconds)
        status, seconds = raw_post(  # no length given: counted while read
            port, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
            b"6400000\r\n", chunks=100,
        )  # fmt: skip
        assert status == 413 and seconds < 1, (status, seconds)
        assert process_family.rss_mb(server.family) - before < 50

        body = json.dumps({"images": EXAMPLE_INPUT}).encode()
        for content_type in (None, "text/plain", "multipart/form-data"):
            headers = {"Content-Length": len(body)}
            if content_type:
                headers["Content-Type"] = content_type
            assert raw_post(port, headers, body)[0] == 415, content_type
        huge = body.replace(b"13", b"1" + b"0" * 309, 1)  # past float range
        assert _post(port, huge)[0] == 400
        assert _post(port, body.replace(b"13", b"1e39", 1))[0] == 400  # past float32
        long_id = "a" * 100_000
        status, answer = _post(port, json.dumps({"request_id": long_id, "labels": [0]}).encode(),
                               "feedback", labeller(log))  # fmt: skip
        assert status == 400 and len(json.dumps(answer)) < 2000
        assert long_id not in log.with_suffix(".out").read_text()

        # Labels: of the model's class type only; a second label needs overwrite.
        request_id = _post(port, body)[1]["request_id"]
        for wrong in (True, 0.0, "0", None, [0]):
            status, _ = _post(port, json.dumps({"request_id": request_id, "labels": [wrong]})
                              .encode(), "feedback", labeller(log))  # fmt: skip
            assert status == 400, wrong
        first = {"request_id": request_id, "labels": [0]}
        assert _post(port, json.dumps(first).encode(), "feedback", labeller(log))[0] == 200
        again = {"request_id": request_id, "labels": [6]}
        assert _post(port, json.dumps(again).encode(), "feedback", labeller(log))[0] == 409
        assert (
            _post(
                port, json.dumps({**again, "overwrite": True}).encode(), "feedback", labeller(log)
            )[1]["overwritten"]
            == 1
        )
    table = inference_log.read(log).table
    assert table.set_index("request_id").loc[request_id, "label"] == "6"


def test_explain_answers_each_images_map_within_limits_of_its_own(loop, tmp_path):
    """POST /explain: the prediction /predict gives and each image's map of Integrated
    Gradients (of the network the served variant was made from), complete within 5%; the
    token, a batch limit and a rate of its own; 4xx for what the model does not read."""
    ws, state = loop
    summary = state.result()
    test = load_split(ws.prepared, "test").x
    body = json.dumps({"images": test[:3].tolist()}).encode()
    limits = {"MLOOP_API_TOKEN": "s3cret", "MLOOP_EXPLAIN_MAX_BATCH": "3",
              "MLOOP_EXPLAIN_RATE": "1", "MLOOP_SERVICE_WORKERS": "1"}  # fmt: skip
    with _served(summary.bento.bento_tag, tmp_path / "log.sqlite", **limits) as (port, _):
        assert _post(port, body, "explain")[0] == 401
        status, answer = _post(port, body, "explain", "s3cret")
        assert status == 200, answer
        predicted = _post(port, body, "predict", "s3cret")[1]["predictions"]
        assert answer["predictions"] == predicted
        assert answer["method"] == "integrated-gradients"
        assert answer["explained_version"] == summary.registration.version  # the network
        for prediction, found in zip(predicted, answer["explanations"], strict=True):
            assert found["class"] == prediction["class"]
            grid = np.asarray(found["attributions"]["grid"])
            assert grid.shape == (8, 8) and np.abs(grid).sum() > 0
            assert found["completeness"]["error"] <= 0.05, found["completeness"]
        one = json.dumps({"images": test[:1].tolist()}).encode()
        burst = [_post(port, one, "explain", "s3cret") for _ in range(5)]  # within a second
        refused = [answer for status, answer in burst if status == 429]
        assert refused and "MLOOP_EXPLAIN_RATE" in refused[0]["error"], burst
        time.sleep(1.1)
        four = json.dumps({"images": test[:4].tolist()}).encode()
        status, refused = _post(port, four, "explain", "s3cret")
        assert status == 413 and "MLOOP_EXPLAIN_MAX_BATCH" in json.dumps(refused)
        for wrong in ({"rows": [{"a": 1}]}, {"images": [[1, 2, 3]]}, {"images": test[:1].tolist(),
                      "texts": ["x"]}, {}):  # fmt: skip
            time.sleep(1.1)
            status, refused = _post(port, json.dumps(wrong).encode(), "explain", "s3cret")
            assert status == 400, (wrong, status, refused)


def test_a_log_that_cannot_be_written_makes_the_service_not_ready(loop, tmp_path):
    _, state = loop
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOOP_INFERENCE_LOG", str(blocker / "inference.sqlite"))  # cannot be made
        server = supervisor.start(state.result().bento.bento_tag, "127.0.0.1", port,
                               tmp_path / "serve.out")  # fmt: skip
    try:
        supervisor.wait_http(
            f"http://127.0.0.1:{port}/livez", server, log_file=tmp_path / "serve.out"
        )
        assert _get(port, "readyz")[0] == 503
        status, answer = _post(port, json.dumps({"images": EXAMPLE_INPUT}).encode())
        assert status == 503 and "inference log" in json.dumps(answer)
    finally:
        supervisor.stop(server)


def _mloop(ws: Workspace, *args: str, log: Path, **env) -> subprocess.Popen:
    environment = {**os.environ, **env}
    return supervisor.start_process([sys.executable, "-m", "flows.cli", "--workspace", str(ws.root),
                                  *args], log, environment)  # fmt: skip


def _wait_for(log: Path, text: str, process: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.is_file() and text in log.read_text():
            return
        assert process.poll() is None, log.read_text()
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} in {log}:\n{log.read_text()}")


def _gone(token: str, timeout_s: float = 30) -> list[str]:
    """The processes of a family still alive after ``timeout_s`` (none, if all stopped)."""
    from components.core import process_family

    deadline = time.monotonic() + timeout_s
    while process_family.members(token) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [process_family.describe(p) for p in process_family.members(token)]


def _refused(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_mloop_serve_refuses_a_busy_port_and_stops_everything_on_sigterm(loop, tmp_path):
    from components.core import process_family

    ws, _ = loop
    port = str(free_port())
    first_log, second_log = tmp_path / "first.out", tmp_path / "second.out"
    env = {"MLOOP_INFERENCE_LOG": str(tmp_path / "log.sqlite")}
    first = _mloop(ws, "serve", "--port", port, log=first_log, **env)
    try:
        _wait_for(first_log, "mloop: ready", first)
        started = process_family.members(first.family)
        assert len(started) >= 3, [process_family.describe(p) for p in started]  # server, workers
        assert _post(int(port), json.dumps({"images": EXAMPLE_INPUT}).encode())[0] == 200

        second = _mloop(ws, "serve", "--port", port, log=second_log, **env)
        assert second.wait(timeout=120) == 1
        said = second_log.read_text()
        assert "already in use" in said and "mloop: ready" not in said, said
        assert "serving" not in said
        assert _post(int(port), json.dumps({"images": EXAMPLE_INPUT}).encode())[0] == 200
        assert b"bentoml_service_request_total{" in _get(int(port), "metrics")[1]  # untouched

        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=90) == 0
        assert _gone(first.family) == []
        assert _refused(int(port))
        assert "mloop: stopped" in first_log.read_text()
    finally:
        supervisor.stop(first)


@pytest.mark.parametrize("victim", ["mloop serve", "bentoml serve"])
def test_killing_either_process_with_sigkill_leaves_nothing_running(loop, tmp_path, victim):
    """SIGKILL of mloop serve (its guard ends the rest) or of the Bento server (mloop
    serve ends its orphaned workers and exits non-zero)."""
    from components.core import process_family

    ws, _ = loop
    port = free_port()
    log = tmp_path / "serve.out"
    served = _mloop(ws, "serve", "--port", str(port), log=log,
                    MLOOP_INFERENCE_LOG=str(tmp_path / "log.sqlite"))  # fmt: skip
    try:
        _wait_for(log, "mloop: ready", served)
        if victim == "mloop serve":
            served.kill()
        else:
            (pid,) = [p for p in process_family.members(served.family)
                      if "bentoml serve" in process_family.describe(p)]  # fmt: skip
            os.kill(pid, signal.SIGKILL)
            assert served.wait(timeout=60) != 0
            assert "the server exited with -9" in log.read_text()
        served.wait(timeout=60)
        assert _gone(served.family) == []
        assert _refused(port)
    finally:
        supervisor.stop(served)


def test_mloop_serve_shows_why_the_server_could_not_start(loop, tmp_path):
    """A worker that fails at start-up (its model is unreadable): the error, exit 1, fast."""
    import bentoml

    ws, state = loop
    model = bentoml.models.get(state.result().bento.model_tag)
    spec = Path(model.path) / "mlflow_model" / "MLmodel"
    spec.rename(spec.with_suffix(".hidden"))
    log = tmp_path / "serve.out"
    try:
        started = time.monotonic()
        served = _mloop(ws, "serve", "--port", str(free_port()), log=log,
                        MLOOP_INFERENCE_LOG=str(tmp_path / "log.sqlite"))  # fmt: skip
        try:
            assert served.wait(timeout=120) == 1
        finally:
            supervisor.stop(served)
        said = log.read_text()
        assert "the server could not start" in said and "MLmodel" in said, said
        assert time.monotonic() - started < 90
    finally:
        spec.with_suffix(".hidden").rename(spec)


def test_mloop_serve_needs_a_token_beyond_loopback(loop, tmp_path):
    ws, _ = loop
    for token in ("", "  "):  # an empty token is no token
        env = {**os.environ, "MLOOP_API_TOKEN": token}
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli", "--workspace", str(ws.root), "serve", "--host",
             "0.0.0.0", "--port", str(free_port())],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert done.returncode == 2 and "without MLOOP_API_TOKEN" in done.stderr, done.stderr


def test_failing_validation_stops_the_flow_before_training(tmp_path):
    import mlflow

    raw = _params(validate={"pixel_max": 10.0})  # the digits reach 16: the suite must fail
    with looped(tmp_path / "bad", raw) as (ws, state):
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
def test_the_loop_on_a_users_own_data(tmp_path, kind):
    """A CSV table and a folder of images, given only by params, go round the whole loop."""
    import bentoml
    import mlflow

    from tests.helpers.data import make_images, make_table

    root = tmp_path / kind
    root.mkdir()
    if kind == "tabular":
        make_table(n=600).to_csv(root / "customers.csv", index=False)
        data = {"source": "tabular", "tabular": {"path": "customers.csv", "label": "y"}}
    else:
        make_images(root / "shapes", per_class=50)
        data = {"source": "images", "images": {"path": "shapes", "size": [12, 12]}}
    raw = _params(data=data, register={"model_name": f"own-{kind}"},
                  package={"service_name": f"own_{kind}"})  # fmt: skip
    with looped(root, raw) as (ws, state):
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


def test_mlflow_ui_shows_the_runs_and_the_champion_in_a_browser(loop, tmp_path):
    browser = chromium()
    import mlflow

    ws, state = loop
    port = free_port()
    ui = supervisor.start_process(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{ws.mlflow_db}",
         "--host", "127.0.0.1", "--port", str(port)],
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        supervisor.wait_http(base, ui, timeout_s=120)
        experiment = mlflow.get_experiment_by_name("digits").experiment_id
        runs_page = render(browser, f"{base}/#/experiments/{experiment}/runs", tmp_path / "a")
        for name in ("train-cnn", "compress-v1", "monitor"):
            assert name in runs_page, name
        model_page = render(browser, f"{base}/#/models/digits-classifier", tmp_path / "b")
        assert "Version 1" in model_page and "champion" in model_page
    finally:
        supervisor.stop(ui)


def test_the_serving_benchmark_runs_both_sides_and_prints_its_targets(loop):
    """benchmarks/serving.py, shrunk to one round of one-second steps: it serves the
    workspace's Bento and the bare peer, climbs both ladders and checks every target."""
    ws, _ = loop
    done = subprocess.run(
        [sys.executable, "benchmarks/serving.py", "--workspace", str(ws.root), "--rounds", "1",
         "--seconds", "1", "--fixed-seconds", "1", "--batches", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for line in ("fixed rates", "mloop: max sustainable rate", "peer: max sustainable rate",
                 "overload: mloop asked", "targets:", "peak service RSS at 1,000/s"):  # fmt: skip
        assert line in done.stdout, done.stdout[-3000:]


def test_packaging_again_reuses_the_imported_model(loop):
    import bentoml

    from components.core.config import load_params
    from components.package.stage import package_stage

    ws, state = loop
    before = {str(m.tag) for m in bentoml.models.list("digits-classifier")}
    again = package_stage(load_params(ws.params), ws)
    assert again.model_tag == state.result().bento.model_tag
    assert {str(m.tag) for m in bentoml.models.list("digits-classifier")} == before


def test_the_served_model_refuses_a_rebinding_page_and_labels_without_a_labeller(loop, tmp_path):
    """The requests a page on a DNS-rebinding domain sends (its own Host and Origin) and a
    label without the labeller's token, against the real ``bentoml serve``."""
    import http.client

    from components.core.inference_log import labelled

    _, state = loop
    log = tmp_path / "log.sqlite"
    body = json.dumps({"images": EXAMPLE_INPUT}).encode()

    def send(port, path, payload, **headers):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("POST", path, payload, {"Content-Type": "application/json",
                                                        **headers})  # fmt: skip
            answer = connection.getresponse()
            return answer.status, json.loads(answer.read() or b"{}")
        finally:
            connection.close()

    with _served(state.result().bento.bento_tag, log) as (port, _):
        evil = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
        status, answer = send(port, "/predict", body, **evil)
        assert status == 421 and "evil.example" in answer["error"]
        other = {"Origin": f"http://evil.example:{port}"}  # Host right, another page's script
        assert send(port, "/predict", body, **other)[0] == 403
        status, answer = send(port, "/predict", body)
        assert status == 200
        label = json.dumps({"request_id": answer["request_id"], "labels": [0]}).encode()
        assert send(port, "/feedback", label, **evil)[0] == 421
        status, answer = send(port, "/feedback", label)
        assert status == 401 and "labeller token" in answer["error"]
        forged = {"Authorization": "Bearer nope", "X-Mloop-Labeller": "default"}
        assert send(port, "/feedback", label, **forged)[0] == 401
        token = {"Authorization": f"Bearer {labeller(log)}"}
        assert send(port, "/feedback", label, **token) == (
            200, {"request_id": json.loads(label)["request_id"], "labelled": 1,
                  "overwritten": 0})  # fmt: skip
    rows = labelled(log)
    assert list(rows["label_source"]) == ["default"]  # only the labeller's label is kept


def test_promote_and_rollback_change_what_is_served(loop, tmp_path):
    """mloop promote --force and mloop rollback move champion-compressed with the champion
    and rebuild the Bento; a running mloop serve answers with the new version within 10 s,
    and traffic at 200 requests/s through both changes loses no request.

    Leaves the registry as it found it: champion 1, champion-compressed its variant.
    """
    import threading

    import mlflow

    from components.core.config import load_params
    from components.register.stage import register_stage
    from components.serve import traffic

    ws, state = loop
    compressed = state.result().bento.model_version  # champion 1's variant
    again = register_stage(load_params(ws.params), ws)  # the same weights: not promoted
    assert not again.decision.promote
    log = tmp_path / "serve.out"
    port = free_port()
    served = _mloop(ws, "serve", "--port", str(port), log=log,
                    MLOOP_INFERENCE_LOG=str(tmp_path / "log.sqlite"))  # fmt: skip
    body = json.dumps({"images": EXAMPLE_INPUT}).encode()
    images, labels = traffic.test_images(load_params(ws.params), ws, "none")
    results, stop = [], threading.Event()

    def load() -> None:  # 200 requests/s, in one-second rounds, until told to stop
        while not stop.is_set():
            results.append(traffic.run(f"http://127.0.0.1:{port}", images, labels, rate=200,
                                       duration_s=1.0))  # fmt: skip

    def answered_by(version: str, alias: str, timeout_s: float = 180) -> float:
        start = time.monotonic()
        while time.monotonic() < start + timeout_s:
            with contextlib.suppress(OSError):
                status, answer = _post(port, body)
                if status == 200 and answer["model_version"] == version:
                    assert answer["model_alias"] == alias
                    return time.monotonic() - start
            time.sleep(0.2)
        raise AssertionError(f"still not version {version} after {timeout_s} s:\n{log.read_text()}")

    def mloop(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "flows.cli", "--workspace", str(ws.root),
                               *args], capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    sender = threading.Thread(target=load, daemon=True)
    try:
        _wait_for(log, "mloop: ready", served)
        answered_by(compressed, "champion-compressed")
        sender.start()
        switched = {}
        said = mloop("promote", again.version, "--force")
        assert f"version {again.version} (champion)" in said  # it has no variant: served itself
        client = mlflow.MlflowClient()
        with pytest.raises(mlflow.exceptions.MlflowException):
            client.get_model_version_by_alias("digits-classifier", "champion-compressed")
        switched["promote"] = answered_by(again.version, "champion", timeout_s=10)  # else raises
        assert f"served: version {again.version} (champion)" in mloop("models")

        said = mloop("rollback")
        assert f"version {again.version} -> 1" in said
        version = client.get_model_version_by_alias("digits-classifier", "champion-compressed")
        assert str(version.version) == compressed
        switched["rollback"] = answered_by(compressed, "champion-compressed", timeout_s=10)
        assert f"served: version {compressed} (champion-compressed)" in mloop("models")
        time.sleep(1.0)
    finally:
        stop.set()
        sender.join(timeout=30)
        supervisor.stop(served)
    sent = sum(r.sent for r in results)
    failed = {k: v for r in results for k, v in r.errors.items()}
    versions = {v for r in results for v in r.versions}
    print(
        f"\nmodel change under load: {sent} sent at 200/s, {sent - sum(r.ok for r in results)}"
        f" failed {failed}; answers switched {switched} s after the command returned"
    )
    assert sent >= 2000 and sum(r.ok for r in results) == sent, (sent, failed)
    assert versions == {compressed, again.version}  # the traffic saw both models answer
    said = log.read_text()
    assert "restarting" not in said and said.count("every worker swapped in") == 2, said


@contextlib.contextmanager
def _small_disk(path: Path, size: str = "4m"):
    """A tmpfs of ``size`` at ``path``: a disk that can really fill up (needs root)."""
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def test_a_full_disk_answers_503_with_the_reason_and_recovers(loop, tmp_path):
    _, state = loop
    body = json.dumps({"images": EXAMPLE_INPUT}).encode()
    disk = tmp_path / "disk"
    with (
        _small_disk(disk),
        _served(state.result().bento.bento_tag, disk / "log.sqlite") as (port, _),
    ):
        assert _post(port, body)[0] == 200
        filler = disk / "filler"
        with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:  # until the disk is full
                f.write(b"\0" * 4096)
        answers = [_post(port, body) for _ in range(30)]
        refused = [a for s, a in answers if s == 503]
        assert refused and all(s in (200, 503) for s, _ in answers), answers
        assert "full" in json.dumps(refused[0])  # the reason, not "unexpected error"
        assert _get(port, "readyz")[0] == 503
        filler.unlink()
        assert _post(port, body)[0] == 200  # space again: answers, and ready again
        assert _get(port, "readyz")[0] == 200
