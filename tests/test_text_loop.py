"""The text loop end to end on SMS spam (trimmed to be quick): gate, tokenizer, transformer,
registry, compression, Bento, ``mloop serve`` answering /predict_text, ``mloop traffic``
with texts, and the production monitor on the logged text descriptors."""

import json
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from components.core import inference_log, process_family
from components.core.config import load_params
from components.core.credentials import first_token
from components.core.kinds.tokenizer import load as load_tokenizer
from components.core.kinds.tokenizer import saved_length
from components.core.paths import Workspace
from components.core.splits import load_split
from components.ingest.harvest import harvest
from components.serve import supervisor, traffic
from tests.helpers import REPO, free_port, mloop_serve, post

pytestmark = pytest.mark.slow

SMS = REPO.parent / "shared" / "data" / "sms_spam" / "sms_spam.csv"


def _params(ws: Workspace, data: str, **train) -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"] = {"source": "text", "text": {"path": data}}
    raw["train"].update(model="transformer", transformer={"width": 32, "depth": 2, "heads": 2},
                        epochs=2,
                        batch_size=32, learning_rate=0.002, dropout=0.1, baseline="none",
                        pretrain_epochs=1, pretrain_report=True)  # fmt: skip
    raw["train"].update(train)
    raw["register"]["model_name"] = "sms-spam"  # and so the Bento's name (package.service_name)
    raw["compress"].update(latency_repeats=20, variants=["dynamic-int8", "onnx", "onnx-int8"])
    raw["monitor"].update(min_rows=200, cooldown_minutes=60, retrain_on_drift=False)
    ws.params.write_text(yaml.safe_dump(raw))


def _post(port: int, path: str, body: dict) -> tuple[int, dict]:
    return post(port, json.dumps(body).encode(), path)


def test_the_text_loop_gates_trains_ships_serves_and_monitors_sms_spam(tmp_path, monkeypatch):
    from flows.monitor import monitor
    from flows.retrain import retrain

    ws = Workspace(tmp_path / "ws")
    ws.root.mkdir()
    data = ws.root / "sms.csv"
    data.write_bytes(SMS.read_bytes())
    before = data.read_bytes()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws.mlflow_db}")
    monkeypatch.setenv("MLOOP_INFERENCE_LOG", str(ws.inference_log))
    monkeypatch.setenv("MLOOP_LOG_INPUTS", "true")
    _params(ws, "sms.csv")

    result = retrain(params_file=str(ws.params), workspace=str(ws.root))
    assert data.read_bytes() == before  # raw data only ever read
    meta = json.loads((ws.prepared / "meta.json").read_text())
    assert meta["kind"] == "text" and meta["counts"]["test"] == 1035  # the 80/20 reference split
    assert 8 <= meta["text"]["max_length"] <= 512
    tokenizer = load_tokenizer(ws.prepared / "tokenizer.json")  # the length travels with it
    assert saved_length(tokenizer) == meta["text"]["max_length"]
    dropped = pd.read_parquet(ws.prepared / "dropped_rows.parquet")
    assert len(dropped) == 403 and dropped["_reason"].str.contains("duplicate").all()
    kept = ws.state / "references" / f"{meta['version']}.texts.parquet"  # the drift reference
    assert len(pd.read_parquet(kept)) == meta["counts"]["train"]
    assert result.registration.decision.promote
    # two short epochs of a tiny encoder, held above what always saying "ham" scores
    # (accuracy 0.873, macro F1 0.466 on this test split)
    test_labels = load_split(ws.prepared, "test").y
    majority = np.bincount(test_labels).max() / len(test_labels)
    scores = result.evaluation.scores
    assert majority == pytest.approx(0.873, abs=0.002)
    assert scores.accuracy > max(0.9, majority + 0.03) and scores.macro_f1 > 0.7, scores
    client = mlflow.MlflowClient()
    train_run = client.get_run(result.train.run_id)
    assert "pretrain/train/loss" in train_run.data.metrics  # the MLM step ran and was tracked
    bought = json.loads((ws.reports / "pretraining.json").read_text())  # and what it bought
    assert set(bought) == {"pretrain_epochs", "with", "without", "gain"}
    assert bought["gain"]["val_macro_f1"] == pytest.approx(
        bought["with"]["val_macro_f1"] - bought["without"]["val_macro_f1"]
    )
    assert "pretraining.gain.val_macro_f1" in train_run.data.metrics
    logged = {a.path for a in client.list_artifacts(result.train.run_id, "tokenizer")}
    assert logged == {"tokenizer/tokenizer.json"}
    assert any((ws.state / "tensorboard").glob("train-transformer-*/events.out.tfevents.*"))
    compression = result.compression
    assert {v.name for v in compression.variants} == {"fp32", "dynamic-int8", "onnx", "onnx-int8"}
    assert result.bento.bento_tag.startswith("sms-spam:")  # named after the registered model

    with mloop_serve(ws.root) as port:
        status, one = _post(port, "predict_text", {"texts": "WINNER!! Claim your prize now"})
        assert status == 200, one
        assert one["model_version"] == result.bento.model_version
        assert one["predictions"][0]["class"] in ("ham", "spam")
        status, two = _post(port, "predict_text", {"texts": ["see you at 6", "ok"]})
        assert status == 200 and len(two["predictions"]) == 2
        assert _post(port, "predict_text", {"texts": ["fine", "   "]})[0] == 400
        assert _post(port, "predict_text", {"texts": "x" * 5001})[0] == 413
        assert _post(port, "predict", {"images": [[0.0] * 8] * 8})[0] == 400  # texts only
        # why: each word's share of the answer, pieces merged back into the words as sent
        status, why = _post(port, "explain", {"texts": "WINNER!! Claim your prize now"})
        assert status == 200, why
        assert why["predictions"] == one["predictions"] and why["method"] == "integrated-gradients"
        (found,) = why["explanations"]
        words = [w for w, _ in found["attributions"]]
        assert words == ["WINNER", "!", "!", "Claim", "your", "prize", "now"], words
        assert found["completeness"]["error"] <= 0.05, found["completeness"]
        assert _post(port, "explain", {"texts": ["ok"] * 17})[0] == 413  # its own batch limit
        assert _post(port, "explain", {"rows": [{"text": "ok"}]})[0] == 400

        # clean traffic: the test texts, labelled; no drift
        params = load_params(ws.params)
        texts, labels = traffic.test_images(params, ws, "none")
        clean = traffic.run(f"http://127.0.0.1:{port}", texts, labels, rate=100,
                            duration_s=3.0, feedback=1.0, retries=5,
                            labeller_token=first_token(ws.labellers))  # fmt: skip
        assert clean.ok == clean.sent == 300 and not clean.errors, clean.summary()
        assert clean.accuracy > max(0.9, majority + 0.03)
        check = monitor(params_file=str(ws.params), workspace=str(ws.root))
        assert check.drift is not None and not check.drift.drifted, check.summary()
        # the log holds each text's descriptors, and the text itself (MLOOP_LOG_INPUTS)
        rows = inference_log.labelled(ws.inference_log)
        assert len(rows) == 300 and (rows["size"] > 0).all()
        assert set(rows["inputs"].map(bytes.decode)) <= set(texts.texts)
        harvested = harvest(params, ws)  # the labelled texts become a batch, through the gate
        assert harvested.batch is not None and harvested.batch.rows == 300, harvested.summary()
        # a change of source: the same texts with letters turned into digits and symbols
        noisy, _ = traffic.test_images(params, ws, "noise")
        changed = traffic.run(f"http://127.0.0.1:{port}", noisy, labels, rate=100,
                              duration_s=3.0, retries=5)  # fmt: skip
        assert changed.ok == 300, changed.summary()
        check = monitor(params_file=str(ws.params), workspace=str(ws.root))
        assert check.drift.drifted, check.summary()
        assert {"non_letter", "digits"} <= set(check.drift.drifted_columns)
        assert check.leaning and "not compared" not in check.leaning, check.leaning
        # explanations beside predictions at once (after the monitor's windows): each
        # worker's explain thread encodes with a tokenizer of its own (one shared with the
        # event loop raised "Already borrowed": 500s)
        jobs = [("explain", {"texts": "free entry, txt WIN now"})] * 16 + [
            ("predict_text", {"texts": "see you at 6"})] * 120  # fmt: skip
        with ThreadPoolExecutor(16) as pool:
            answered = list(pool.map(lambda job: (job[0], _post(port, *job)[0]), jobs[::-1]))
        assert {s for route, s in answered if route == "predict_text"} == {200}, answered
        assert {s for route, s in answered if route == "explain"} <= {200, 429}, answered

    # TensorBoard beside MLflow: `mloop tensorboard` lists the training run, and stops whole
    port = free_port()
    board = supervisor.start_process(
        [sys.executable, "-m", "flows.cli", "--workspace", str(ws.root), "tensorboard",
         "--port", str(port)],
    )  # fmt: skip
    try:
        supervisor.wait_http(f"http://127.0.0.1:{port}/data/runs", board, timeout_s=120)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=30) as answer:
            runs = json.loads(answer.read())
        assert f"train-transformer-{result.train.run_id[:8]}" in runs, runs
    finally:
        supervisor.stop(board)
    assert process_family.members(board.family) == []


def test_a_better_tfidf_baseline_is_what_the_gate_promotes_and_the_bento_serves(
    tmp_path, monkeypatch
):
    """The TF-IDF baseline is a challenger like any other: against a barely trained encoder
    (five batches) it wins the gate, nothing is compressed, and /predict_text answers with it
    through the same tokenizer."""
    from flows.retrain import retrain

    ws = Workspace(tmp_path / "ws")
    ws.root.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws.mlflow_db}")
    monkeypatch.setenv("MLOOP_INFERENCE_LOG", "off")
    _params(ws, str(SMS), epochs=1, limit_batches=5, pretrain_epochs=0, baseline="auto")
    result = retrain(params_file=str(ws.params), workspace=str(ws.root))
    champion = mlflow.MlflowClient().get_model_version_by_alias("sms-spam", "champion")
    assert champion.tags["mloop.family"] == "tfidf", champion.tags
    run = mlflow.MlflowClient().get_run(champion.run_id)
    assert run.info.run_name == "baseline-tfidf" and run.data.tags["mloop.kind"] == "baseline"
    assert result.compression.skipped and result.bento.model_version == str(champion.version)
    with mloop_serve(ws.root) as port:
        status, answer = _post(
            port,
            "predict_text",
            {
                "texts": [
                    "URGENT! You have won a"
                    " 1 week FREE membership in our prize draw. Txt WIN to 80086"
                ]
            },
        )
        assert status == 200, answer
        assert answer["model_version"] == str(champion.version)
        assert answer["predictions"][0]["class"] == "spam"
        status, why = _post(port, "explain", {"texts": "WIN a FREE prize: txt WIN now"})
        assert status == 200 and why["method"] == "coefficient-x-tfidf", why
        (found,) = why["explanations"]
        assert found["class"] == "spam" and found["completeness"] is None
        pushed = dict((w.lower(), v) for w, v in found["attributions"])
        assert max(pushed, key=pushed.get) in {"win", "free", "prize", "txt"}, pushed
