"""What feeds the next model is trusted only once checked: honest batches pass as a
distribution, shifted ones do not; links are never followed; what is gated is what is
stored; oversized batches are refused before they are read; label conflicts follow a
declared policy; the gate's middleware refuses rebinding pages, other origins and
labels without a labeller's token. Real Great Expectations, real files."""

import asyncio
import json
import os
import zipfile

import numpy as np
import pandas as pd
import pytest

from components.core.credentials import ensure_labeller_file, labeller_tokens, read_labellers
from components.core.inference_log import InferenceLog, labelled
from components.core.kinds.sources import read_path
from components.core.rawdata import DataError
from components.core.splits import DROPPED, load_meta
from components.ingest import ingest as ingest_module
from components.ingest.ingest import ingest, ingest_incoming
from components.prepare.batches import list_batches, verify
from components.prepare.stage import prepare_stage
from components.validate.stage import validate_path, validate_stage
from tests.helpers import REPO, small_params
from tests.helpers.data import checksums

# ---------------------------------------------------------------- honest and shifted batches


def _cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns=lambda c: c.replace(" ", "_"))
    frame["target"] = frame["target"].map({0: "malignant", 1: "benign"})
    return frame


@pytest.fixture
def cancer(workspace):
    """scikit-learn's breast-cancer table: its first 400 rows are the data set, prepared
    and through the gate (the reference profile); the other 169 rows a batch."""
    frame = _cancer()
    frame.iloc[:400].to_csv(workspace.root / "cancer.csv", index=False)
    data = {"source": "tabular", "tabular": {"path": "cancer.csv", "label": "target"}}
    params = small_params(data=data)
    prepare_stage(params, workspace)
    validate_stage(params, workspace)
    return workspace, params, frame.iloc[400:].reset_index(drop=True)


def test_a_held_out_batch_of_the_same_table_passes_and_a_shifted_one_does_not(cancer, tmp_path):
    ws, params, rest = cancer
    path = tmp_path / "rest.csv"
    rest.to_csv(path, index=False)
    before = checksums(path)
    result = ingest(path, params, ws)
    assert result.accepted, result.reason  # before: refused on 2 values beyond the range
    assert checksums(path) == before
    batch = result.batch
    assert batch.rows + len(batch.rejected) == 169 and len(batch.rejected) <= 2
    if batch.rejected:  # the faulty rows are held with their reasons, the rest accepted
        held = pd.read_csv(result.quarantine / "rejected_rows.csv")
        assert list(held["_row"]) == list(batch.rejected)
        assert held["_reason"].str.contains("out of range").all()
    prepared = prepare_stage(params, ws)  # the retrain's data names the batch
    assert prepared.batches == (batch.id,)
    assert load_meta(ws.prepared)["batches"][0]["id"] == batch.id
    assert sum(load_meta(ws.prepared)["counts"].values()) == 400 + batch.rows

    shifted = rest.copy()
    col = "mean_radius"
    shifted[col] += 3 * _cancer()[col].iloc[:400].std()
    shifted.to_csv(tmp_path / "shifted.csv", index=False)
    refused = ingest(tmp_path / "shifted.csv", params, ws)
    assert not refused.accepted and col in refused.reason, refused.reason
    assert [b.id for b in list_batches(ws.batches)] == [batch.id]


def test_a_batch_with_too_many_faulty_rows_is_refused_whole(cancer, tmp_path):
    ws, params, rest = cancer
    bad = rest.copy()
    bad.loc[:20, "mean_area"] = 1e6  # 21 of 169 rows (12%): beyond ingest.max_rejected_share
    bad.to_csv(tmp_path / "bad.csv", index=False)
    refused = ingest(tmp_path / "bad.csv", params, ws)
    assert not refused.accepted and "mean_area" in refused.reason
    assert not list_batches(ws.batches)
    strict = small_params(data=params.data.model_dump(), ingest={"row_policy": "reject_batch"})
    one = rest.copy()
    one.loc[0, "mean_area"] = 1e6
    one.to_csv(tmp_path / "one.csv", index=False)
    assert ingest(tmp_path / "one.csv", params, ws).accepted  # reject_rows: 1 row held
    one.loc[1, "mean_area"] = 2e6
    one.to_csv(tmp_path / "two.csv", index=False)
    assert not ingest(tmp_path / "two.csv", strict, ws).accepted  # reject_batch: refused


def test_what_is_gated_is_what_is_stored_even_while_the_file_is_still_written(
    cancer, tmp_path, monkeypatch
):
    ws, params, rest = cancer
    path = tmp_path / "growing.csv"
    rest.iloc[:150].to_csv(path, index=False)
    gated_bytes = path.read_bytes()
    real = ingest_module.read_path

    def read_while_written(copy, *args, **kwargs):  # a writer appends once ingest has its copy
        with open(path, "a") as out:
            out.write(rest.iloc[150:].to_csv(index=False, header=False))
        return real(copy, *args, **kwargs)

    monkeypatch.setattr(ingest_module, "read_path", read_while_written)
    result = ingest(path, params, ws)
    assert result.accepted, result.reason
    verify(result.batch)
    stored = result.batch.folder / result.batch.data[0]
    assert stored.read_bytes() == gated_bytes != path.read_bytes()
    assert result.batch.rows + len(result.batch.rejected) == 150


# ---------------------------------------------------------------- links, caps, empty folders


def _image_folder(root, classes=("a", "b"), n=3):
    from PIL import Image

    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((8, 8), 40 * k + i, np.uint8)).save(root / name / f"{i}.png")
    return root


def test_a_class_folder_linked_elsewhere_is_refused_and_never_read(workspace, tmp_path):
    params = small_params()
    outside = _image_folder(tmp_path / "outside", classes=("secret",))
    folder = _image_folder(tmp_path / "imgs")
    (folder / "c").symlink_to(outside / "secret", target_is_directory=True)
    with pytest.raises(DataError, match="symbolic link") as caught:
        read_path(folder, params.data)
    assert str(folder / "c") in str(caught.value)
    with pytest.raises(DataError, match="symbolic link"):
        validate_path(folder, params, workspace)
    result = ingest(folder, params, workspace)  # nothing read, nothing copied from outside
    assert not result.accepted and "symbolic link" in result.reason
    held = [p for p in result.quarantine.rglob("*") if p.is_file()]
    assert [p.name for p in held] == ["reason.txt"], held  # what the link names: not held
    assert not list(workspace.batches.glob("batch-*"))
    linked_file = tmp_path / "link.npz"
    linked_file.symlink_to(tmp_path / "nowhere.npz")
    with pytest.raises(DataError, match="symbolic link"):
        read_path(linked_file, params.data)


def test_a_folder_in_the_drop_folder_that_holds_a_link_is_quarantined_not_followed(
    workspace, tmp_path
):
    params = small_params()
    prepare_stage(params, workspace)
    validate_stage(params, workspace)
    outside = tmp_path / "outside.npz"
    np.savez(outside, x=np.zeros((200, 8, 8), np.float32), y=np.arange(200) % 10)
    item = workspace.incoming / "drop"
    item.mkdir(parents=True)
    (item / "data.npz").symlink_to(outside)
    found = ingest_incoming(params, workspace)
    assert len(found.results) == 1 and not found.results[0].accepted
    assert "symbolic link" in found.results[0].reason
    assert not list_batches(workspace.batches)


def test_an_empty_class_folder_is_refused_naming_it(workspace, tmp_path):
    folder = _image_folder(tmp_path / "imgs")
    (folder / "empty").mkdir()
    with pytest.raises(DataError, match="class folder 'empty' holds no"):
        read_path(folder, small_params().data)
    # ingest reads its scratch copy, but names the folder given, once
    result = ingest(folder, small_params(), workspace)
    assert result.reason.startswith(f"{folder}: class folder 'empty' holds no"), result.reason
    assert "ingest-" not in result.reason and result.reason.count(str(folder)) == 1


def test_a_zip_bomb_npz_and_an_oversized_table_are_refused_before_they_are_read(tmp_path):
    params = small_params()
    header = {"descr": "<f8", "fortran_order": False, "shape": (1_000_000_000,)}
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w") as entry:
            np.lib.format.write_array_header_1_0(entry, header)
            entry.write(b"\0" * 1024)  # 1 KiB of the 8 GB its header claims
        archive.writestr("y.npy", b"")
    assert bomb.stat().st_size < 10_000
    with pytest.raises(DataError, match="ingest.max_npz_bytes"):
        read_path(bomb, params.data, limits=params.ingest)
    table = tmp_path / "big.csv"
    pd.DataFrame({"a": range(1000), "y": [0, 1] * 500}).to_csv(table, index=False)
    small = params.ingest.model_copy(update={"max_table_bytes": 1000})
    with pytest.raises(DataError, match="over the 1,000 that ingest.max_table_bytes"):
        read_path(table, params.data, label="y", limits=small)


# ---------------------------------------------------------------- label conflicts


def _tweets(tmp_path, workspace, conflicts: str | None):
    rng = np.random.default_rng(0)
    words = ["thanks", "late", "again", "great", "crew", "delay", "bag", "seat", "love", "ugh"]
    texts = [" ".join(rng.choice(words, 6)) + f" {i}" for i in range(300)]
    labels = ["positive" if i % 2 else "negative" for i in range(300)]
    texts += ["@united thanks!"] * 3 + ["@delta where is my bag"] * 2
    labels += ["positive", "neutral", "positive", "negative", "neutral"]
    pd.DataFrame({"text": texts, "label": labels}).to_csv(workspace.root / "t.csv", index=False)
    text = {"path": "t.csv", "vocab_size": 200, **({"conflicts": conflicts} if conflicts else {})}
    return small_params(data={"source": "text", "text": text})


def test_conflicting_text_labels_fail_by_default_naming_a_text_and_its_labels(workspace, tmp_path):
    params = _tweets(tmp_path, workspace, None)
    with pytest.raises(DataError) as caught:
        prepare_stage(params, workspace)
    message = str(caught.value)
    assert "2 texts appear under two or more labels (5 rows)" in message
    assert "e.g. '@united thanks!' as neutral and positive" in message
    assert "declare data.text.conflicts: drop or majority" in message
    # a batch of such texts is refused by the gate, in the same terms
    batch = tmp_path / "batch.csv"
    pd.read_csv(workspace.root / "t.csv").to_csv(batch, index=False)
    result = validate_path(batch, params, workspace, text="text")
    assert not result.passed
    (hint,) = [f.describe() for f in result.failures if f.column == "_conflict"]
    assert hint.startswith("2 texts appear under two or more labels (5 rows), e.g. '@")
    assert hint.endswith("declare data.text.conflicts: drop or majority")


@pytest.mark.parametrize(
    ("policy", "kept"), [("drop", {}), ("majority", {"@united thanks!": "positive"})]
)
def test_a_declared_conflict_policy_settles_them_with_reasons(workspace, tmp_path, policy, kept):
    params = _tweets(tmp_path, workspace, policy)
    prepare_stage(params, workspace)
    validate_stage(params, workspace)  # passes now
    meta = load_meta(workspace.prepared)
    rows = pd.concat(pd.read_parquet(p) for p in workspace.prepared.glob("*_rows.parquet")
                     if not p.name.startswith(DROPPED))  # fmt: skip
    clashing = rows[rows["text"].str.startswith("@")]
    assert dict(zip(clashing["text"], clashing["label"], strict=True)) == kept
    dropped = pd.read_parquet(workspace.prepared / f"{DROPPED}_rows.parquet")
    settled = dropped[dropped["_reason"].str.contains(f"data.text.conflicts: {policy}")]
    assert settled["text"].str.startswith("@").all()
    # majority: the 2-1 text keeps 'positive' (its second row: a duplicate), the tie goes
    assert len(settled) == (5 if policy == "drop" else 3)
    assert sum(meta["counts"].values()) == 300 + len(kept)


def test_a_table_conflict_policy_drops_rows_of_the_same_features_under_two_labels(
    workspace, tmp_path
):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    frame["y"] = np.where(frame["a"] > 0, "hi", "lo")
    frame.loc[299, ["a", "b"]] = frame.loc[0, ["a", "b"]].to_numpy()
    frame.loc[299, "y"] = "hi" if frame.loc[0, "y"] == "lo" else "lo"
    frame.to_csv(workspace.root / "t.csv", index=False)
    tab = {"path": "t.csv", "label": "y"}
    with pytest.raises(DataError, match="declare data.tabular.conflicts: drop or majority"):
        prepare_stage(small_params(data={"source": "tabular", "tabular":
                                         {**tab, "conflicts": "fail"}}), workspace)  # fmt: skip
    prepare_stage(small_params(data={"source": "tabular", "tabular":
                                     {**tab, "conflicts": "drop"}}), workspace)  # fmt: skip
    dropped = pd.read_parquet(workspace.prepared / f"{DROPPED}_rows.parquet")
    assert len(dropped) == 2 and dropped["_reason"].str.contains("conflicts: drop").all()


# ---------------------------------------------------------------- labellers and the gate


def test_the_labeller_file_is_private_and_labels_name_their_labeller(tmp_path):
    path = tmp_path / "labellers.json"
    assert ensure_labeller_file(path) and not ensure_labeller_file(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    (name, token), = read_labellers(path).items()  # fmt: skip
    assert name == "default" and len(token) >= 32
    assert labeller_tokens(path, "x" * 20) == {token: "default", "x" * 20: "env"}
    log = InferenceLog(tmp_path / "log.sqlite")
    log.append("r1", "1", np.zeros((2, 4), np.float32), [0, 1], np.ones(2))
    log.attach_labels("r1", [0, 1], source="default")
    assert list(labelled(tmp_path / "log.sqlite")["label_source"]) == ["default", "default"]


def test_a_log_written_before_labellers_gains_the_column(tmp_path):
    import sqlite3

    db = sqlite3.connect(tmp_path / "old.sqlite")
    db.executescript("""CREATE TABLE predictions (id INTEGER PRIMARY KEY, request_id TEXT NOT
        NULL, item INTEGER NOT NULL, ts REAL NOT NULL, model_version TEXT NOT NULL, mean REAL
        NOT NULL, std REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL, ink REAL NOT NULL,
        inputs BLOB NOT NULL, prediction TEXT NOT NULL, confidence REAL NOT NULL, label TEXT,
        UNIQUE (request_id, item));""")
    db.close()
    log = InferenceLog(tmp_path / "old.sqlite")
    log.append("r1", "1", np.zeros((1, 4), np.float32), [0], np.ones(1))
    log.attach_labels("r1", [0], source="crowd")
    assert list(labelled(tmp_path / "old.sqlite")["label_source"]) == ["crowd"]


def _call(gate, method: str, path: str, headers: dict, server=("127.0.0.1", 3000)):
    scope = {"type": "http", "method": method, "path": path, "server": server,
             "headers": [(k.encode(), v.encode()) for k, v in
                         {"content-type": "application/json", **headers}.items()]}  # fmt: skip
    sent, seen = [], []

    async def app(scope, receive, send):
        seen.append(dict(scope["headers"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    gate.app = app

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(gate(scope, receive, send))
    return sent[0]["status"], (seen[0] if seen else None), json.loads(sent[1]["body"])


def test_the_gate_refuses_rebinding_hosts_other_origins_and_feedback_without_a_labeller():
    from components.package.http_gate import RequestGate

    gate = RequestGate(None, labellers={"t" * 20: "crowd"}, allowed_hosts="mloop.internal")
    evil = {"host": "evil.example:3000", "origin": "http://evil.example:3000"}
    for path in ("/predict_rows", "/predict_text", "/feedback", "/readyz"):
        status, _, body = _call(gate, "POST" if path != "/readyz" else "GET", path, evil)
        assert status == 421 and "evil.example" in body["error"], path
    for host in ("127.0.0.1:3000", "localhost:3000", "[::1]:3000", "127.8.0.1",
                 "mloop.internal:3000", "10.1.2.3:3000"):  # fmt: skip
        assert _call(gate, "POST", "/predict", {"host": host}, ("10.1.2.3", 3000))[0] == 200
    other = {"host": "127.0.0.1:3000", "origin": "http://evil.example:3000"}
    assert _call(gate, "POST", "/predict", other)[0] == 403
    same = {"host": "127.0.0.1:3000", "origin": "http://127.0.0.1:3000"}
    assert _call(gate, "POST", "/predict", same)[0] == 200
    assert _call(gate, "POST", "/feedback", {"host": "127.0.0.1:3000"})[0] == 401
    forged = {"host": "127.0.0.1:3000", "authorization": "Bearer wrong", "x-mloop-labeller": "x"}
    assert _call(gate, "POST", "/feedback", forged)[0] == 401
    good = {"host": "127.0.0.1:3000", "authorization": f"Bearer {'t' * 20}",
            "x-mloop-labeller": "forged"}  # fmt: skip
    status, headers, _ = _call(gate, "POST", "/feedback", good)
    assert status == 200 and headers[b"x-mloop-labeller"] == b"crowd"
    closed = RequestGate(None)  # no labeller configured: feedback is closed, says how
    status, _, body = _call(closed, "POST", "/feedback", {"host": "localhost"})
    assert status == 401 and "MLOOP_LABELLER_TOKENS" in body["error"]
    anyone = RequestGate(None, allowed_hosts="*")
    assert _call(anyone, "POST", "/predict", {"host": "evil.example"})[0] == 200


def test_harvest_takes_only_the_chosen_labellers(tmp_path):
    path = tmp_path / "log.sqlite"
    log = InferenceLog(path)
    for i, who in enumerate(["crowd", "expert", "crowd"]):
        log.append(f"r{i}", "1", np.zeros((1, 4), np.float32), [0], np.ones(1))
        log.attach_labels(f"r{i}", [0], source=who)
    rows = labelled(path)
    assert list(rows[rows["label_source"].isin(["expert"])]["request_id"]) == ["r1"]
    assert os.path.getsize(path) > 0


ADULT = REPO.parent / "shared" / "data" / "adult"


@pytest.mark.skipif(not ADULT.is_dir(), reason=f"{ADULT} is absent (../shared/data/adult)")
def test_batches_of_the_held_out_adult_file_pass_and_a_shifted_one_does_not(workspace, tmp_path):
    """UCI Adult, nobody here wrote it: its training file is the data set, rows of its test
    file come as batches. An honest batch passes whole; one with age moved by 3 standard
    deviations, or hours per week given in minutes, is refused naming the column."""
    train = pd.read_csv(ADULT / "adult_train.csv")
    test = pd.read_csv(ADULT / "adult_test.csv")
    train.to_csv(workspace.root / "adult.csv", index=False)
    gappy = dict.fromkeys(("workclass", "occupation", "native_country"), "impute")
    params = small_params(data={"source": "tabular", "tabular": {
        "path": "adult.csv", "label": "income", "missing": {"columns": gappy}}})  # fmt: skip
    prepare_stage(params, workspace)
    validate_stage(params, workspace)
    test.iloc[:2000].to_csv(tmp_path / "honest.csv", index=False)
    honest = ingest(tmp_path / "honest.csv", params, workspace)
    assert honest.accepted and not honest.batch.rejected, honest.reason
    for column, change in (("age", lambda v: v + 3 * train["age"].std()),
                           ("hours_per_week", lambda v: v * 60)):  # fmt: skip
        bad = test.iloc[2000:4000].copy()
        bad[column] = change(bad[column])
        bad.to_csv(tmp_path / f"{column}.csv", index=False)
        refused = ingest(tmp_path / f"{column}.csv", params, workspace)
        assert not refused.accepted and f"samples.{column}" in refused.reason, refused.reason
