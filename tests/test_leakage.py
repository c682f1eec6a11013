"""Probable leakage and the task a label is read as: a column that reproduces the label on the
training split (a copy of it, a category that names it, the parts of a total) is named in
the data gate's report with the settings that settle it; ``data.tabular.task: auto`` reads
a numeric label of many values as a regression and says why."""

import json

import numpy as np
import pandas as pd
import pytest

from components.core.rawdata import DataError
from components.core.splits import load_meta, load_split
from components.prepare.stage import prepare_stage
from components.validate.stage import validate_stage
from tests.helpers import small_params


def _params(path, **tabular):
    return small_params(data={"source": "tabular", "tabular": {"path": str(path), "label": "y",
                                                               **tabular}})  # fmt: skip


def _demand(tmp_path, n=400, seed=0) -> pd.DataFrame:
    """A demand table that ships its target's parts: y = online + in_store; plus honest
    columns and ``copy``, the label under another name."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"price": rng.uniform(1, 9, n), "promo": rng.choice(["yes", "no"], n),
                          "online": rng.poisson(30, n).astype(float),
                          "in_store": rng.poisson(50, n).astype(float)})  # fmt: skip
    frame["y"] = frame["online"] + frame["in_store"]
    return frame


def test_a_column_equal_to_the_label_is_named_as_probable_leakage_in_the_gate_report(
    tmp_path, workspace
):
    frame = _demand(tmp_path).assign(copy=lambda f: f["y"] * 2.0 + 1.0)
    frame.to_csv(tmp_path / "demand.csv", index=False)
    prepare_stage(_params(tmp_path / "demand.csv"), workspace)
    meta = load_meta(workspace.prepared)
    assert meta["task"] == "regression"
    assert [f["columns"] for f in meta["leakage"]] == [["copy"]]
    message = meta["leakage"][0]["message"]
    assert "column 'copy' alone reproduces the label" in message
    assert "data.tabular.drop" in message and "data.tabular.allow_leakage: ['copy']" in message
    result = validate_stage(_params(tmp_path / "demand.csv"), workspace)
    assert result.passed and message in result.warnings
    report = json.loads((workspace.reports / "validation.json").read_text())
    assert message in report["warnings"]


def test_columns_that_sum_to_the_label_are_named_together_and_a_declared_one_is_not(
    tmp_path, workspace
):
    _demand(tmp_path).to_csv(tmp_path / "demand.csv", index=False)
    prepare_stage(_params(tmp_path / "demand.csv"), workspace)
    (found,) = load_meta(workspace.prepared)["leakage"]
    assert sorted(found["columns"]) == ["in_store", "online"] and found["score"] > 0.999
    assert "together (a weighted sum)" in found["message"]
    prepare_stage(_params(tmp_path / "demand.csv", allow_leakage=["online"]), workspace)
    assert load_meta(workspace.prepared)["leakage"] == []  # declared intended: said no more


def test_a_category_that_names_the_class_is_leakage_of_a_classification(tmp_path, workspace):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=300), "y": rng.choice(["churn", "stay"], 300)})
    frame["status"] = frame["y"].map({"churn": "closed", "stay": "open"})
    frame.to_csv(tmp_path / "churn.csv", index=False)
    prepare_stage(_params(tmp_path / "churn.csv"), workspace)
    meta = load_meta(workspace.prepared)
    assert meta["task"] == "classification"
    assert [f["columns"] for f in meta["leakage"]] == [["status"]]
    assert "(accuracy 1.0000)" in meta["leakage"][0]["message"]


def test_auto_reads_a_label_of_few_values_as_classes_and_a_declared_task_wins(tmp_path, workspace):
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"x": rng.normal(size=300), "y": rng.integers(1, 6, 300)})
    frame.to_csv(tmp_path / "stars.csv", index=False)
    prepare_stage(_params(tmp_path / "stars.csv"), workspace)
    meta = load_meta(workspace.prepared)
    assert meta["task"] == "classification" and meta["classes"] == ["1", "2", "3", "4", "5"]
    assert "at most 20" in meta["task_reason"]
    prepare_stage(_params(tmp_path / "stars.csv", task="regression",
                          target_transform=["log1p", "standardise"]), workspace)  # fmt: skip
    meta = load_meta(workspace.prepared)
    assert meta["task"] == "regression" and meta["target"]["transforms"][0] == "log1p"
    y = load_split(workspace.prepared, "train").y
    assert y.dtype == np.float64 and meta["target"]["shift"] == pytest.approx(np.log1p(y).mean())


def test_a_regression_label_that_is_no_number_stops_prepare_naming_the_rows(tmp_path, workspace):
    frame = _demand(tmp_path)
    frame["y"] = frame["y"].astype(object)
    frame.loc[5, "y"] = "n/a"
    frame.to_csv(tmp_path / "demand.csv", index=False)
    with pytest.raises(DataError, match=r"a regression label must be a finite number: 1 are not"):
        prepare_stage(_params(tmp_path / "demand.csv", task="regression", na_values=[]), workspace)


def test_log1p_refuses_a_label_at_or_below_minus_one_in_any_split(tmp_path, workspace):
    frame = _demand(tmp_path)
    frame.loc[len(frame) - 1, "y"] = -5.0
    frame.to_csv(tmp_path / "demand.csv", index=False)
    params = _params(tmp_path / "demand.csv", target_transform=["log1p"], allow_leakage=["online"])
    with pytest.raises(DataError, match="log1p needs every label above -1; 'y' goes down to -5"):
        prepare_stage(params, workspace)


def test_a_regression_batch_keeps_its_labels_numbers_within_what_the_label_ever_was(
    tmp_path, workspace, monkeypatch
):
    """A labeller's 1e308, a label that is text, a label that is empty: each row is held in
    quarantine with its reason; the rest joins as numbers, and the next prepare reads them."""
    from components.ingest.ingest import ingest

    monkeypatch.setenv("MLOOP_INFERENCE_LOG", str(workspace.inference_log))
    frame = _demand(tmp_path)
    frame.to_csv(tmp_path / "demand.csv", index=False)
    params = _params(tmp_path / "demand.csv", allow_leakage=["online", "in_store"])
    prepare_stage(params, workspace)
    validate_stage(params, workspace)
    batch = _demand(tmp_path, n=200, seed=5).astype({"y": object})
    batch.loc[[3, 4, 5], "y"] = [1e308, "lots", None]
    batch.to_csv(tmp_path / "batch.csv", index=False)
    result = ingest(tmp_path / "batch.csv", params, workspace)
    assert result.accepted, result.reason
    assert list(result.batch.rejected) == [3, 4, 5]
    reasons = (result.quarantine / "rejected_rows.csv").read_text()
    assert "label out of range" in reasons and "label not a finite number" in reasons
    prepared = prepare_stage(params, workspace)
    assert prepared.batches == (result.batch.id,) and prepared.task == "regression"
    rows = sum(prepared.counts.values())
    assert rows == 400 + 197 and load_meta(workspace.prepared)["classes"] == []
    strict = params.model_copy(
        update={"ingest": params.ingest.model_copy(update={"row_policy": "reject_batch"})}
    )
    refused = ingest(tmp_path / "batch.csv", strict, workspace)
    assert not refused.accepted and "labels.value" in refused.reason, refused.reason
