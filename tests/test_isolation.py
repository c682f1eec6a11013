"""Issue 39: nothing one caller sends harms the others (the rows of its hostile pass, each
a test here or named beside the test that holds it)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from components.core.inference_log import InferenceLog
from components.core.kinds.encoding import TableEncoding
from components.core.splits import load_meta
from components.prepare.stage import prepare_stage
from components.validate.stage import validate_stage
from tests.helpers import small_params


def _table_params(path, **tabular):
    return small_params(data={"source": "tabular", "tabular": {"path": str(path), "label": "y",
                                                               **tabular}})  # fmt: skip


def _regression_table(n=300, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"price": rng.uniform(1, 9, n), "promo": rng.choice(["yes", "no"], n),
                          "size": rng.uniform(0, 5, n)})  # fmt: skip
    frame["y"] = 3 * frame["price"] - 2 * frame["size"] + rng.normal(0, 0.5, n) + 20
    return frame


@pytest.fixture
def regression_ws(tmp_path, workspace, monkeypatch):
    """A prepared and validated regression table (its reference profile written)."""
    monkeypatch.setenv("MLOOP_INFERENCE_LOG", str(workspace.inference_log))
    _regression_table().to_csv(tmp_path / "demand.csv", index=False)
    params = _table_params(tmp_path / "demand.csv")
    prepare_stage(params, workspace)
    validate_stage(params, workspace)
    return params, workspace


def _logged(ws, rows: pd.DataFrame, labels: list) -> None:
    """Each row a served request in the inference log, labelled as a labeller would."""
    meta = load_meta(ws.prepared)
    encoding = TableEncoding.from_schema(meta["schema"])
    x = encoding.encode_rows(rows.drop(columns=["y"]).to_dict("records"))
    log = InferenceLog(ws.inference_log)
    for i, label in enumerate(labels):
        log.append(f"req-{i:04d}", "1", x[i : i + 1], [float(label)], np.zeros(1))
        log.attach_labels(f"req-{i:04d}", [label], source="default")


def test_harvest_stores_only_what_its_gate_accepted(regression_ws):
    """Row 3: labels of 1e308 and -1e308 are held by harvest's gate; the batch it stores
    holds none of them (batch.json names them in ``held``), and the next run trains."""
    from components.ingest.harvest import harvest
    from components.prepare.batches import list_batches

    params, ws = regression_ws
    rows = _regression_table(n=120, seed=7)
    labels = rows["y"].tolist()
    labels[3], labels[10], labels[20] = 1e308, -1e308, 1e30
    _logged(ws, rows, labels)
    result = harvest(params, ws)
    assert result.batch is not None, result.reason
    (batch,) = list_batches(ws.batches)
    assert batch.held == (3, 10, 20) and batch.rows == 117
    record = json.loads((batch.folder / "batch.json").read_text())
    assert record["held"] == [3, 10, 20]
    stored = pd.read_parquet(batch.folder / "rows.parquet")
    assert len(stored) == 117 and stored["y"].abs().max() < 1e3
    reasons = (result.quarantine / "rejected_rows.csv").read_text()
    assert "label out of range" in reasons
    prepared = prepare_stage(params, ws)  # the next run reads the batch and passes its gate
    assert prepared.batches == (batch.id,)
    assert validate_stage(params, ws).passed


def test_a_label_outside_the_known_range_is_refused_at_feedback(regression_ws):
    """Row 3, at the door: the package stage records the gate's range for the label; the
    task refuses a label beyond it (the service answers 400 naming the range; the served
    check is in test_regression.py)."""
    from components.core.tasks.regression import REGRESSION
    from components.package.stage import label_range

    params, ws = regression_ws
    bounds = label_range(params, ws, load_meta(ws.prepared))
    y = _regression_table()["y"]
    span = y.max() - y.min()
    low, high = bounds  # the range the label ever had, widened by validate.range_margin
    assert low < y.min() and y.max() < high and high - low < 1.5 * span
    assert REGRESSION.check_feedback([25.0], [], bounds) == [25.0]
    for bad in (1e308, -1e308, 1e30):
        with pytest.raises(ValueError, match=r"outside the label's known range \["):
            REGRESSION.check_feedback([25.0, bad], [], bounds)


@pytest.mark.parametrize("huge", [10**400, -(10**400), 10**309])
def test_an_integer_past_float64_is_refused_like_1e400(huge):
    """Row 5: an integer of 401 digits raised OverflowError (a 500); now the rows' and the
    labels' checks refuse it as they refuse 1e400."""
    from components.core.kinds.base import Refused
    from components.core.kinds.encoding import TableEncoding
    from components.core.tasks.regression import REGRESSION

    encoding = TableEncoding(label="y", numeric=["a"], categorical={}, fill={})
    with pytest.raises(Refused, match="must be finite, within the float32 range"):
        encoding.encode_rows([{"a": huge}])
    with pytest.raises(ValueError, match="not finite numbers"):
        REGRESSION.check_feedback([huge], [])


def test_the_labeller_token_from_the_environment_is_held_to_the_files_length():
    """Row 9: MLOOP_LABELLER_TOKEN=x was accepted where the file wants 16 characters."""
    from components.core.credentials import CredentialError, labeller_tokens

    with pytest.raises(CredentialError, match="at least 16"):
        labeller_tokens(None, "x")
    assert labeller_tokens(None, "a" * 16) == {"a" * 16: "env"}


def test_validate_data_applies_the_workspaces_declared_conflict_policy(workspace):
    """Row 10: ``mloop data validate --data`` refused conflicting labels in a workspace
    that declares ``data.text.conflicts: drop``, naming the setting it had."""
    from components.validate.stage import validate_path

    rng = np.random.default_rng(0)
    words = ["thanks", "late", "again", "great", "crew", "delay", "bag", "seat", "love", "ugh"]
    texts = [" ".join(rng.choice(words, 6)) + f" {i}" for i in range(300)]
    labels = ["positive" if i % 2 else "negative" for i in range(300)]
    texts += ["@united thanks!"] * 3
    labels += ["positive", "neutral", "positive"]
    path = workspace.root / "t.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    for conflicts, passes in (("drop", True), ("fail", False)):
        text = {"path": "t.csv", "vocab_size": 200, "conflicts": conflicts}
        params = small_params(data={"source": "text", "text": text})
        result = validate_path(path, params, workspace, text="text")
        conflict = [f for f in result.failures if f.column == "_conflict"]
        assert (not conflict) == passes, (conflicts, result.in_brief())


# ---------------------------------------------------------------- what ingest is given


@pytest.fixture
def table_ws(tmp_path, workspace, monkeypatch):
    """A prepared and validated classification table, its file in the workspace."""
    from tests.helpers.data import make_table

    monkeypatch.setenv("MLOOP_INFERENCE_LOG", str(workspace.inference_log))
    (workspace.root / "customers.csv").write_text(make_table(400).to_csv(index=False))
    data = {"source": "tabular", "tabular": {"path": "customers.csv", "label": "y"}}
    params = small_params(data=data, validate={"ranges": {"age": [0, 120], "income": [-100, 300]}})
    prepare_stage(params, workspace)
    validate_stage(params, workspace)
    return params, workspace


def test_a_batch_of_rows_already_in_the_data_is_refused_or_stored_without_them(table_ws):
    """Row 8: the training file given again as a batch was accepted, and the next run
    failed on duplicates; now it is refused at ingest. A batch whose repeats would take the
    data past ``validate.max_duplicate_share`` is stored without them (ingest.row_policy:
    reject_rows), so the next run passes; repeats under the share are new data as before."""
    from components.ingest.ingest import ingest
    from tests.helpers.data import make_table

    params, ws = table_ws
    again = ingest(ws.root / "customers.csv", params, ws)
    assert not again.accepted and "400 of 400 rows are already in the data" in again.reason
    mixed = pd.concat([make_table(200, seed=1), pd.read_csv(ws.root / "customers.csv")[:5]])
    mixed.to_csv(ws.root / "mixed.csv", index=False)
    strict = params.model_copy(
        update={"gate": params.gate.model_copy(update={"max_duplicate_share": 0.0})}
    )
    result = ingest(ws.root / "mixed.csv", strict, ws)
    assert result.accepted, result.reason
    assert result.batch.rejected == (200, 201, 202, 203, 204) and result.batch.rows == 200
    reasons = pd.read_csv(result.quarantine / "rejected_rows.csv")["_reason"]
    assert reasons.str.contains("row already in the data").all()
    prepare_stage(strict, ws)
    assert validate_stage(strict, ws).passed
    # under the share the data may hold (5%), five repeats are kept, as the data's own are
    fresh = pd.concat([make_table(200, seed=4), pd.read_csv(ws.root / "customers.csv")[5:10]])
    fresh.to_csv(ws.root / "fresh.csv", index=False)
    kept = ingest(ws.root / "fresh.csv", params, ws)
    assert kept.accepted and kept.batch.rejected == () and kept.batch.rows == 205, kept.reason


def test_a_refused_oversize_input_is_not_copied_into_quarantine(table_ws):
    """Row 4: a sparse file past the size cap (4 KB on disk) was refused, but quarantine held
    a fully allocated copy; now only its name, size and reason are kept."""
    from components.ingest.ingest import ingest

    params, ws = table_ws
    small = params.model_copy(
        update={"ingest": params.ingest.model_copy(update={"max_table_bytes": 1 << 20})}
    )
    sparse = ws.root / "huge.csv"
    with open(sparse, "wb") as out:
        out.truncate((1 << 20) + 1)  # a hole: nothing allocated
    result = ingest(sparse, small, ws)
    assert not result.accepted and "1,048,577 bytes, over the 1,048,576" in result.reason
    held = list(result.quarantine.iterdir())
    assert [p.name for p in held] == ["reason.txt"]
    assert "size: 1,048,577 bytes (not copied)" in (result.quarantine / "reason.txt").read_text()


def test_special_files_are_refused_by_type_before_a_byte_is_read(table_ws, tmp_path):
    """Row 11: /proc/self/environ was copied into quarantine (the process's environment);
    a FIFO would hang a read. Both are refused by type, and nothing of them is kept."""
    import os

    from components.ingest.ingest import ingest, ingest_incoming

    params, ws = table_ws
    result = ingest(__import__("pathlib").Path("/proc/self/environ"), params, ws)
    assert not result.accepted and "the kernel's proc file system" in result.reason
    assert [p.name for p in result.quarantine.iterdir()] == ["reason.txt"]
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    refused = ingest(fifo, params, ws)
    assert not refused.accepted and "a device, a FIFO or a socket" in refused.reason
    ws.incoming.mkdir(parents=True, exist_ok=True)
    os.mkfifo(ws.incoming / "pipe.csv")  # the drop folder: skipped, never hashed (a hang)
    assert ingest_incoming(params, ws).results == []


def test_odd_names_are_escaped_or_refused_in_one_line(table_ws, tmp_path):
    """Row 11: a newline or an ESC in a file name went raw to the terminal and into the
    batch's ``origin``; ``.`` and ``dir/..`` ended in a FileExistsError."""
    from pathlib import Path

    from components.ingest.ingest import ingest
    from tests.helpers.data import make_table

    params, ws = table_ws
    odd = tmp_path / "march\n\x1b[31mred.csv"
    make_table(200, seed=3).to_csv(odd, index=False)
    result = ingest(odd, params, ws)
    assert result.accepted, result.reason
    shown = result.summary()
    assert "\x1b" not in shown and "\n" not in shown and "\\x1b[31m" in shown
    record = (result.batch.folder / "batch.json").read_text()
    assert "\\\\x1b" in record and "\\\\n" in record  # escaped text, JSON-quoted
    for name in (Path("."), tmp_path / "sub" / ".."):
        (tmp_path / "sub").mkdir(exist_ok=True)
        refused = ingest(name, params, ws)
        assert not refused.accepted
        assert "name the file or folder itself, not '.' or '..'" in refused.reason


def test_a_stored_batch_that_fails_the_run_is_named_with_the_command_that_sets_it_aside(
    regression_ws,
):
    """Row 3's way out: a batch stored before this fix (harvest kept 1e308) failed every
    later run until someone deleted files. The failure names the batch and
    ``mloop data batches --exclude``; set aside, the next run passes, and the batch's files
    stay as accepted (``--include`` takes it back)."""
    import subprocess
    import sys

    from components.prepare.batches import add_batch, list_batches
    from components.validate.report import DataValidationError
    from tests.helpers import REPO

    params, ws = regression_ws
    rows = _regression_table(n=120, seed=9)
    rows.loc[5, "y"] = 1e308  # as the harvest of before stored it

    def write(folder):
        rows.to_parquet(folder / "rows.parquet", index=False)
        return ["rows.parquet"]

    add_batch(ws.batches, ws.batch_lock, write, format="table", source="harvest",
              origin="inference.sqlite", labels=rows["y"].tolist())  # fmt: skip
    prepare_stage(params, ws)
    with pytest.raises(DataValidationError) as failed:
        validate_stage(params, ws)
    assert "batch-0001 (harvest, 120 rows" in str(failed.value)
    assert "`mloop data batches --exclude batch-0001`" in str(failed.value)
    (ws.root / "params.yaml").write_text(json.dumps(params.model_dump(mode="json")))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "flows.cli", "--workspace", str(ws.root),
                               "data", "batches", *args], capture_output=True, text=True,
                              cwd=REPO, timeout=120)  # fmt: skip

    done = cli("--exclude", "batch-0001", "--reason", "labels of 1e308")
    assert done.returncode == 0, done.stderr
    assert "batch-0001 set aside" in done.stdout and "no: set aside" in done.stdout
    (batch,) = list_batches(ws.batches)
    assert batch.excluded.endswith("labels of 1e308")
    prepared = prepare_stage(params, ws)
    assert prepared.batches == () and validate_stage(params, ws).passed
    unknown = cli("--exclude", "batch-0009")
    assert unknown.returncode == 1 and "no batch 'batch-0009'" in unknown.stderr
    assert cli("--include", "1").returncode == 0
    assert prepare_stage(params, ws).batches == ("batch-0001",)


# ---------------------------------------------------------------- the expensive route's budget


def test_the_cpu_budget_admits_by_cost_refills_at_its_share_and_says_when():
    """Row 1's mechanism: an explanation is admitted by its estimated CPU-seconds, not by a
    count; past the bucket it is shed at once with the seconds until it would fit; what it
    really cost settles the estimate."""
    from components.package.budget import CpuBudget, UnitCost, retry_after

    now = [0.0]
    budget = CpuBudget(share=0.25, capacity=2.0, clock=lambda: now[0])
    assert budget.admit(1.5) is None  # 0.5 CPU-s left
    wait = budget.admit(1.0)
    assert wait == pytest.approx(2.0)  # 0.5 more at 0.25/s
    assert retry_after(wait) == 2 and retry_after(0.01) == 1
    now[0] = 2.0
    assert budget.admit(1.0) is None and budget.available == pytest.approx(0.0)
    budget.settle(1.0, 0.25)  # it took less than estimated: the rest comes back
    assert budget.available == pytest.approx(0.75)
    assert budget.admit(5.0) == pytest.approx((2.0 - 0.75) / 0.25)  # waits for a full bucket
    now[0] = 100.0
    assert budget.admit(5.0) is None and budget.available == pytest.approx(-3.0)  # owed
    cost = UnitCost(unknown=2.0)
    assert cost.estimate(4096) == 2.0  # nothing measured yet: one at a time
    cost.observe(100, 0.5)
    assert cost.estimate(1000) == pytest.approx(5.0) and cost.estimate(0) == pytest.approx(0.005)


# ---------------------------------------------------------------- paths resolve once


def test_a_pretrained_folder_is_resolved_once_against_the_workspace(tmp_path):
    """Row 6: ``train.hf.model: ../hf/good`` was resolved again by each stage and worker from
    wherever it ran, and a link was read as a Hub id. Now params record the folder's real
    path, a link's target, whatever the working directory; a Hub id stays as it is."""
    import os

    import yaml

    from components.core.config import load_params

    good = tmp_path / "hf" / "good"
    good.mkdir(parents=True)
    (tmp_path / "hf" / "link").symlink_to(good)
    ws = tmp_path / "ws"
    ws.mkdir()
    for given, expected in (("../hf/good", str(good.resolve())),
                            ("../hf/link", str(good.resolve())),
                            ("sentence-transformers/all-MiniLM-L6-v2",
                             "sentence-transformers/all-MiniLM-L6-v2")):  # fmt: skip
        raw = {"train": {"model": "hf", "hf": {"model": given}}}
        (ws / "params.yaml").write_text(yaml.safe_dump(raw))
        before = os.getcwd()
        os.chdir("/")  # where a server or a stage happens to run: nothing depends on it
        try:
            params = load_params(ws / "params.yaml")
        finally:
            os.chdir(before)
        assert params.train.net("hf").model == expected, given


def test_the_explanation_process_ends_with_its_worker_however_the_worker_ends(tmp_path):
    """Every process we start stops with its parent: the explanation process of a worker
    killed with SIGKILL (no exit handler runs) gets the parent-death signal."""
    import signal
    import subprocess
    import sys
    import time

    from components.core import process_family
    from tests.helpers import REPO

    script = ("import time\nfrom components.package.explain_process import ExplainProcess\n"
              "p = ExplainProcess()\np._start()\nprint(p._child.pid, flush=True)\n"
              "time.sleep(120)\n")  # fmt: skip
    worker = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        child = int(worker.stdout.readline())
        assert process_family.stat(child) is not None
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            state = process_family.stat(child)
            if state is None or state.state == "Z":
                break
            time.sleep(0.05)
        state = process_family.stat(child)
        assert state is None or state.state == "Z", state
    finally:
        worker.kill()
        worker.wait()
