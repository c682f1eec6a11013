"""New data in: batches through the gate (``mloop ingest``, the drop folder), labelled traffic
harvested from the inference log, the training window and the recent slice, the gate's
two scores, and the alert for drift without labels. Real Great Expectations, real
MLflow store, real Prefect flows."""

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits

from components.core.inference_log import InferenceLog, Record
from components.core.paths import Workspace
from components.core.splits import RECENT, load_meta, load_split
from components.ingest.harvest import harvest
from components.ingest.ingest import IngestError, ingest, ingest_incoming
from components.prepare.batches import BatchError, list_batches, verify
from components.prepare.stage import prepare_stage
from components.register.gate import decide
from components.validate.stage import validate_stage
from tests.helpers import REPO, looped, repo_params, small_params
from tests.helpers.data import checksums, make_table

DIGITS = load_digits()


def _npz(path, start=0, n=300, invert=True, **change):
    x = DIGITS.images[start : start + n].astype(np.float32)
    arrays = {"x": 16 - x if invert else x, "y": DIGITS.target[start : start + n]}
    arrays.update(change)
    np.savez(path, **arrays)
    return path


@pytest.fixture
def gated(workspace, monkeypatch) -> Workspace:
    """The digits prepared and through the gate once: the data set has its profile."""
    params = small_params()
    prepare_stage(params, workspace)
    validate_stage(params, workspace)
    monkeypatch.setenv("MLOOP_INFERENCE_LOG", str(workspace.inference_log))
    return workspace


def test_a_good_batch_is_accepted_once_and_its_file_only_read(gated, tmp_path):
    params = small_params()
    path = _npz(tmp_path / "inverted.npz")
    before = checksums(path)
    result = ingest(path, params, gated)
    assert result.accepted, result.reason
    batch = result.batch
    assert batch.id == "batch-0001" and batch.rows == 300 and batch.source == "ingest"
    assert batch.format == "arrays" and sum(batch.classes.values()) == 300
    verify(batch)  # the copy hashes to what batch.json records
    record = json.loads((gated.batches / "batch-0001" / "batch.json").read_text())
    assert record["sha256"] == batch.sha256 and record["arrived_iso"].endswith("Z")
    assert checksums(path) == before
    again = ingest(path, params, gated)
    assert not again.accepted and "accepted before, as batch-0001" in again.reason
    assert [b.id for b in list_batches(gated.batches)] == ["batch-0001"]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"y": np.full(300, 11)}, "label"),  # a class the data set does not have
        ({"x": np.full((300, 8, 8), 40.0, np.float32)}, "max"),  # pixels beyond 16
        ({"x": np.zeros((300, 8, 8), np.float32)}, "digest"),  # 300 copies of one image
        ({"x": np.ones((300, 4, 4), np.float32)}, "height"),  # images of another size
    ],
)
def test_a_bad_batch_is_quarantined_with_its_reason_and_nothing_changes(
    gated, tmp_path, change, why
):
    path = _npz(tmp_path / "bad.npz", **change)
    before = checksums(path)
    prepared = checksums(gated.prepared)
    result = ingest(path, small_params(), gated)
    assert not result.accepted and why in result.reason
    assert (result.quarantine / "reason.txt").is_file()
    assert why in (result.quarantine / "reason.txt").read_text()
    assert list_batches(gated.batches) == []
    assert checksums(path) == before and checksums(gated.prepared) == prepared


def test_an_unreadable_or_unfit_batch_is_refused_by_name(gated, tmp_path):
    params = small_params()
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    result = ingest(broken, params, gated)
    assert not result.accepted and "not a readable .npz" in result.reason
    assert (result.quarantine / "broken.npz").is_file()
    table = tmp_path / "table.csv"
    make_table().to_csv(table, index=False)
    unfit = ingest(table, params, gated)  # a table, where the data set holds digits
    assert not unfit.accepted and "label column" in unfit.reason
    assert list_batches(gated.batches) == []


def test_no_batch_before_the_data_set_has_a_reference_profile(workspace, tmp_path):
    with pytest.raises(IngestError, match="no reference profile yet"):
        ingest(_npz(tmp_path / "early.npz"), small_params(), workspace)


def test_batches_join_the_training_data_and_the_newest_gives_the_recent_slice(gated, tmp_path):
    params = small_params()
    frozen = (gated.prepared / "test_x.npy").read_bytes()
    base = load_meta(gated.prepared)["counts"]
    for i in range(3):
        assert ingest(_npz(tmp_path / f"b{i}.npz", start=300 * i), params, gated).accepted
    prepared = prepare_stage(params, gated)
    meta = load_meta(gated.prepared)
    assert prepared.batches == ("batch-0001", "batch-0002", "batch-0003")
    assert [b["recent"] for b in meta["batches"]] == [0, 0, 90]  # 30% of the newest only
    counts = meta["counts"]
    assert counts["test"] == base["test"] and counts[RECENT] == 90
    assert counts["train"] + counts["val"] == base["train"] + base["val"] + 600 + 210
    assert (gated.prepared / "test_x.npy").read_bytes() == frozen  # the frozen split
    recent = load_split(gated.prepared, RECENT)
    assert recent.x.mean() > 8  # inverted digits: mostly light
    validate_stage(params, gated)  # the joined data passes the gate (recent split included)

    last_two = small_params(data={"batches": {"window": "last", "last": 2}})
    assert prepare_stage(last_two, gated).batches == ("batch-0002", "batch-0003")
    none_recent = small_params(data={"batches": {"window": "days", "days": 1e-9}})
    assert prepare_stage(none_recent, gated).batches == ()
    assert RECENT not in load_meta(gated.prepared)["counts"]
    assert not (gated.prepared / "recent_x.npy").exists()  # no stale slice left behind

    data = gated.batches / "batch-0002" / "data.npz"
    data.write_bytes(data.read_bytes()[:-10])  # a batch edited after it was accepted
    with pytest.raises(ValueError, match="batch-0002.*changed since it was accepted"):
        prepare_stage(params, gated)
    with pytest.raises(BatchError):
        verify(list_batches(gated.batches)[1])


def test_a_table_batch_goes_through_the_tables_rules(workspace, tmp_path, monkeypatch):
    import pandas as pd

    (workspace.root / "customers.csv").write_text(make_table(400).to_csv(index=False))
    data = {"source": "tabular", "tabular": {"path": "customers.csv", "label": "y"}}
    # declared ranges: the profile's (the reference's range, widened by a tenth) would
    # refuse a new customer older or richer than every one before
    params = small_params(data=data, validate={"ranges": {"age": [0, 120], "income": [-100, 300]}})
    prepare_stage(params, workspace)
    validate_stage(params, workspace)
    good = tmp_path / "march.csv"
    make_table(200, seed=1).to_csv(good, index=False)
    result = ingest(good, params, workspace)
    assert result.accepted and result.batch.data == ("rows.csv",), result.reason
    bad = make_table(200, seed=2)
    bad.loc[:30, "income"] = None  # missing where the rule is fail
    bad.to_csv(tmp_path / "april.csv", index=False)
    refused = ingest(tmp_path / "april.csv", params, workspace)
    assert not refused.accepted and "income" in refused.reason
    rows = pd.read_csv(refused.quarantine / "rejected_rows.csv")
    assert len(rows) == 31 and rows["_reason"].str.contains("income missing").all()
    prepared = prepare_stage(params, workspace)
    assert prepared.batches == ("batch-0001",)
    meta = load_meta(workspace.prepared)
    assert meta["counts"][RECENT] == 60 and sum(meta["counts"].values()) == 600


def test_gate_with_a_recent_slice_wants_better_recent_and_no_loss_on_the_frozen_split():
    cfg = small_params(register={"max_regression": 0.01}).registry
    promoted = decide(0.975, 0.98, cfg, "1", recent=(0.95, 0.40, 351))
    assert promoted.promote and "recent slice (351 rows)" in promoted.reason
    assert any("within register.max_regression" in r for r in promoted.reasons)
    worse_recent = decide(0.99, 0.98, cfg, "1", recent=(0.40, 0.45, 351))
    assert not worse_recent.promote and "does not beat champion 0.4500" in worse_recent.reason
    lost_frozen = decide(0.95, 0.98, cfg, "1", recent=(0.95, 0.40, 351))
    assert not lost_frozen.promote and "more than register.max_regression" in lost_frozen.reason
    assert (lost_frozen.recent_challenger, lost_frozen.recent_champion) == (0.95, 0.40)
    no_batches = decide(0.99, 0.98, cfg, "1")
    assert no_batches.promote and no_batches.recent_challenger is None


def _log_requests(ws, images, labels, keep_inputs=True, version="1"):
    log = InferenceLog(ws.inference_log, keep_inputs=keep_inputs)
    ids = []
    for i, (x, y) in enumerate(zip(images, labels, strict=True)):
        request_id = f"{version}-{keep_inputs}-{i:05d}"
        log.append(request_id, version, x[None], [int(y)], np.ones(1))
        log.attach_labels(request_id, [int(y)])
        ids.append(request_id)
    log.close()
    return ids


def test_harvest_takes_each_labelled_request_once_and_says_when_inputs_were_not_kept(gated):
    params = small_params()
    blind = _log_requests(gated, DIGITS.images[:150], DIGITS.target[:150], keep_inputs=False)
    nothing = harvest(params, gated)
    assert nothing.batch is None and nothing.without_inputs == len(blind)
    assert "MLOOP_LOG_INPUTS" in nothing.reason and "MLOOP_LOG_INPUTS" in nothing.summary()
    few = _log_requests(gated, 16 - DIGITS.images[200:260], DIGITS.target[200:260])
    waiting = harvest(params, gated)
    assert waiting.batch is None and "waiting: 60 labelled" in waiting.reason
    more = _log_requests(gated, 16 - DIGITS.images[300:500], DIGITS.target[300:500], version="2")
    result = harvest(params, gated)
    assert result.batch is not None and result.batch.rows == 260, result.summary()
    assert result.batch.source == "harvest" and result.without_inputs == 150
    taken = (result.batch.folder / "request_ids.txt").read_text().split()
    assert sorted(taken) == sorted(few + more)
    with np.load(result.batch.folder / "data.npz") as npz:
        assert npz["y"].dtype == np.int64 and npz["x"].shape == (260, 8, 8)
    again = harvest(params, gated)  # only the ones without inputs are left
    assert again.batch is None and "kept its inputs" in again.reason and again.labelled == 150


def test_a_bad_harvest_is_quarantined_and_not_harvested_again(gated):
    params = small_params()
    same = np.repeat(DIGITS.images[:1], 120, axis=0)  # one image 120 times: duplicates
    _log_requests(gated, same, np.zeros(120, int))
    rejected = harvest(params, gated)
    assert rejected.batch is None and "rejected by the data gate" in rejected.reason
    assert len((rejected.quarantine / "request_ids.txt").read_text().split()) == 120
    assert harvest(params, gated).reason == "no labelled predictions since the last harvest"


@pytest.mark.e2e  # two runs of the retrain flow
def test_a_bad_batch_in_the_drop_folder_is_quarantined_while_the_run_goes_on(tmp_path):
    import mlflow

    raw = repo_params()
    raw["train"]["epochs"] = 3
    raw["compress"].update(variants=["onnx"], latency_repeats=10)
    with looped(tmp_path / "ws", raw) as (ws, first):
        assert first.is_completed(), first.message
        from flows.retrain import NoNewData, retrain

        ws.incoming.mkdir(parents=True)
        _npz(ws.incoming / "good.npz")
        bad = _npz(ws.incoming / "bad.npz", y=np.full(300, 42))
        before = checksums(ws.incoming)
        state = retrain(params_file=str(ws.params), workspace=str(ws.root), trigger="schedule",
                        return_state=True)  # fmt: skip
        assert state.is_completed(), state.message
        summary = state.result()
        assert not isinstance(summary, NoNewData)  # good.npz is new data: it trained
        assert summary.train.run_id
        assert [b.id for b in list_batches(ws.batches)] == ["batch-0001"]
        ledger = json.loads((ws.state / "incoming.json").read_text())
        (held,) = [e for e in ledger.values() if e["name"] == bad.name]
        assert held["batch"] is None and "label" in held["reason"]
        assert "label" in (ws.root / held["quarantine"] / "reason.txt").read_text()
        assert checksums(ws.incoming) == before  # the drop folder is only read
        run = mlflow.get_run(summary.train.run_id)
        assert run.data.tags["mloop.batches"] == "batch-0001"
        assert ingest_incoming(load_params_of(ws), ws).skipped == 2  # both seen before

        cli = subprocess.run(
            [sys.executable, "-m", "flows.cli", "--workspace", str(ws.root), "batches"],
            capture_output=True, text=True, cwd=REPO, timeout=120,
        )  # fmt: skip
        assert cli.returncode == 0 and "batch-0001" in cli.stdout and "yes" in cli.stdout

        # drift in traffic nobody labelled: no retrain; the alert says labels are needed
        from components.core.kinds.base import drifted
        from components.monitor.production import check_production

        params = load_params_of(ws)
        test = load_split(ws.prepared, "test")
        shifted = drifted(test.x, "shift", params.monitor, 16.0, np.random.default_rng(0))
        log = InferenceLog(ws.inference_log)
        for i in range(0, 300, 10):
            log.append(f"shift-{i}", "2", shifted[i : i + 10], [0] * 10, np.ones(10))
        log.close()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLOOP_INFERENCE_LOG", str(ws.inference_log))
            check = check_production(params, ws)
        assert check.drift.drifted and not check.retrain, check.summary()
        assert "labels are needed" in check.alert and "ALERT" in check.summary()
        report = json.loads((ws.reports / "production_drift.json").read_text())
        assert "labels are needed" in report["alert"] and report["learnable"] == 0


def load_params_of(ws):
    from components.core.config import load_params

    return load_params(ws.params)


def test_table_rows_come_back_from_the_encoded_inputs_the_log_keeps(tmp_path):
    from components.core.kinds.encoding import TableEncoding
    from components.core.kinds.tables import read_table

    frame = make_table(120)
    frame.to_csv(tmp_path / "t.csv", index=False)
    raw = read_table(tmp_path / "t.csv", "y")
    fitted = TableEncoding.fit(raw, np.arange(len(frame)))
    x = fitted.encode(raw.frame)
    encoding = TableEncoding.from_schema(json.loads(json.dumps(fitted.as_schema())))  # as saved
    rows = encoding.decode(x, frame["y"].to_numpy())[list(frame.columns)]
    # the service encodes the rows as sent to the same inputs, through the same encoder
    sent = frame.drop(columns="y").to_dict("records")
    np.testing.assert_array_equal(encoding.encode_rows(sent), x)
    assert list(rows.columns) == list(frame.columns)
    assert np.allclose(rows["age"], frame["age"]) and np.allclose(rows["income"], frame["income"])
    assert rows["plan"].tolist() == frame["plan"].tolist()
    assert rows["y"].tolist() == frame["y"].tolist()


def test_an_image_folder_batch_and_harvested_images_join_an_image_folder_data_set(
    workspace, tmp_path, monkeypatch
):
    from PIL import Image

    from tests.helpers.data import make_images

    make_images(workspace.root / "shapes", per_class=40, size=12)
    data = {"source": "images", "images": {"path": "shapes", "size": [12, 12]}}
    params = small_params(data=data)
    prepare_stage(params, workspace)
    validate_stage(params, workspace)
    base = load_meta(workspace.prepared)["counts"]
    folder = make_images(tmp_path / "more", per_class=40, size=12)
    for i, file in enumerate(sorted(folder.rglob("*.png"))):  # new images, not copies
        pixels = np.asarray(Image.open(file)).astype(np.int16)
        Image.fromarray(np.clip(pixels + 1 + i % 5, 0, 255).astype(np.uint8)).save(file)
    result = ingest(folder, params, workspace)
    assert result.accepted and result.batch.format == "images", result.reason
    assert len([f for f in result.batch.data if f.startswith("files/")]) == 120
    # labelled traffic logged by the served model: decoded pixels, 0..255, as float32
    monkeypatch.setenv("MLOOP_INFERENCE_LOG", str(workspace.inference_log))
    rng = np.random.default_rng(3)
    labels = ["circle", "square", "stripe"] * 40
    images = [np.full((12, 12), 40.0 * ["circle", "square", "stripe"].index(y))
              + rng.integers(0, 60, (12, 12)) for y in labels]  # fmt: skip
    log = InferenceLog(workspace.inference_log)
    for i, (x, y) in enumerate(zip(images, labels, strict=True)):
        log.append(f"img-{i}", "1", x[None].astype(np.float32), [y], np.ones(1))
        log.attach_labels(f"img-{i}", [y])
    log.close()
    harvested = harvest(params, workspace)
    assert harvested.batch is not None and harvested.batch.rows == 120, harvested.summary()
    prepared = prepare_stage(params, workspace)
    assert prepared.batches == ("batch-0001", "batch-0002")
    counts = load_meta(workspace.prepared)["counts"]
    assert counts[RECENT] == 36  # 30% of the newest batch, the harvested one
    assert sum(counts.values()) == sum(base.values()) + 120 + 120
    recent = load_split(workspace.prepared, RECENT)
    assert recent.x.dtype == np.uint8 and recent.x.shape[1:] == (12, 12)
    files = (workspace.prepared / "train_files.txt").read_text().split()
    assert any(f.startswith("batch-0001/circle/") for f in files)
    validate_stage(params, workspace)


def test_the_drop_folder_reads_new_items_once_and_follows_no_link(gated, tmp_path, caplog):
    params = small_params()
    gated.incoming.mkdir(parents=True)
    _npz(gated.incoming / "good.npz")
    (gated.incoming / "elsewhere.npz").symlink_to(_npz(tmp_path / "outside.npz", start=600))
    first = ingest_incoming(params, gated)
    assert [r.batch.id for r in first.results] == ["batch-0001"] and first.skipped == 0
    assert "elsewhere.npz is a symbolic link: not read" in caplog.text
    again = ingest_incoming(params, gated)
    assert again.results == [] and again.skipped == 1
    assert [b.id for b in list_batches(gated.batches)] == ["batch-0001"]


def test_texts_join_as_batches_from_files_and_from_labelled_traffic(workspace, monkeypatch):
    """A text data set takes batches too: a file of new messages through the text gate
    (``mloop ingest``), and labelled texts from the inference log (``mloop harvest``). A
    batch text that repeats an earlier one never joins twice, and the frozen test split
    stays as it was."""
    import pandas as pd

    from components.core.kinds.texts import TEXTS

    sms = pd.read_csv(REPO.parent / "shared" / "data" / "sms_spam" / "sms_spam.csv", dtype=str,
                      keep_default_na=False).drop_duplicates(ignore_index=True)  # fmt: skip
    sms.iloc[:3000].to_csv(workspace.root / "sms.csv", index=False)
    params = small_params(data={"source": "text", "text": {"path": "sms.csv"}})
    prepare_stage(params, workspace)
    validate_stage(params, workspace)  # the text profile: batches are gated against it
    test_before = pd.read_parquet(workspace.prepared / "test_rows.parquet")

    newer = sms.iloc[3000:3600]
    batch_file = workspace.root / "march.csv"
    pd.concat([newer, sms.iloc[:20]]).to_csv(batch_file, index=False)  # 20 old ones again
    before = checksums(batch_file)
    accepted = ingest(batch_file, params, workspace)
    assert accepted.accepted and accepted.batch.rows == 620, accepted.reason
    assert checksums(batch_file) == before
    census = workspace.root / "census.csv"  # texts of another source: the gate refuses them
    rows = [f"age {30 + i % 40}, workclass Private, 40 hours/week, {i}" for i in range(200)]
    pd.DataFrame({"text": rows, "label": "ham"}).to_csv(census, index=False)
    refused = ingest(census, params, workspace)
    assert not refused.accepted and "mean" in refused.reason, refused.reason

    # labelled texts from the service's log: each text's statistics and the text itself
    monkeypatch.setenv("MLOOP_INFERENCE_LOG", str(workspace.inference_log))
    log = InferenceLog(workspace.inference_log)
    served = sms.iloc[3600:3800]
    for i, (text, label) in enumerate(zip(served["text"], served["label"], strict=True)):
        stats = TEXTS.describe([text], [0.0])
        log.append_many([Record(f"t{i:04d}", "1", np.zeros((1, 8), np.int32), [label],
                                np.ones(1), stats, [text.encode()])])  # fmt: skip
        log.attach_labels(f"t{i:04d}", [label])
    log.close()
    harvested = harvest(params, workspace)
    assert harvested.batch is not None and harvested.batch.rows == 200, harvested.summary()
    rows = pd.read_parquet(harvested.batch.folder / "rows.parquet")
    assert rows["text"].tolist() == served["text"].tolist()

    prepared = prepare_stage(params, workspace)
    assert prepared.batches == ("batch-0001", "batch-0002")
    meta = load_meta(workspace.prepared)
    assert sum(meta["counts"].values()) == 3000 + 600 + 200  # the 20 repeats left out
    dropped = pd.read_parquet(workspace.prepared / "dropped_rows.parquet")
    assert len(dropped) == 20 and dropped["text"].isin(sms["text"].iloc[:20]).all()
    assert meta["counts"][RECENT] == 60  # 0.3 of the newest batch
    assert pd.read_parquet(workspace.prepared / "test_rows.parquet").equals(test_before)
    validate_stage(params, workspace)  # the joined texts pass the gate
