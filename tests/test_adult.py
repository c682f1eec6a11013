"""UCI Adult, whole, with its missing values as given, round the whole loop: the network and
the gradient-boosted trees beside it, the gate between them, and the served champion."""

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from components.core.splits import load_split
from tests.helpers import ADULT, looped, post, repo_params, served

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.skipif(not ADULT.is_dir(), reason=f"{ADULT} is absent (../shared/data/adult)"),
]
GAPPY = ("workclass", "occupation", "native_country")  # the columns with missing values


@pytest.fixture(scope="module")
def adult(tmp_path_factory):
    raw = repo_params()
    raw["data"].update(source="tabular", tabular={
        "path": str(ADULT / "adult_train.csv"), "test_path": str(ADULT / "adult_test.csv"),
        "label": "income", "missing": {"columns": dict.fromkeys(GAPPY, "impute")},
    })  # fmt: skip
    raw["register"].update(model_name="adult-income", metric="test_roc_auc")
    raw["package"]["service_name"] = "adult_income"
    with looped(tmp_path_factory.mktemp("adult"), raw) as run:
        yield run


def test_the_loop_passes_and_the_champion_reaches_the_targets(adult):
    ws, state = adult
    assert state.is_completed(), state.message
    summary = state.result()
    network = summary.evaluation.scores
    peers = {b.kind: b.scores for b in summary.evaluation.baselines}
    assert set(peers) == {"trees", "linear"}
    # The model a user would pick instead: 0.871 accuracy, 0.927 ROC AUC in the issue.
    assert peers["trees"].accuracy >= 0.87 and peers["trees"].roc_auc >= 0.92
    # logistic regression on the same encoding: weaker here (0.85 / 0.90 measured)
    assert peers["linear"].accuracy > 0.83 and peers["linear"].roc_auc > 0.88
    assert network.accuracy > 0.84 and network.roc_auc > 0.89
    report = (ws.reports / "classification_report.txt").read_text()
    assert all(name in report for name in ("network", "trees", "linear", "roc_auc"))
    baseline = json.loads((ws.reports / "baseline_metrics.json").read_text())
    assert baseline["trees"]["test_roc_auc"] == pytest.approx(peers["trees"].roc_auc)
    reg = summary.registration
    assert set(reg.candidates) == {"mlp", "trees", "linear"} and reg.decision.promote
    assert reg.family == "trees"  # it wins on the validation split by ROC AUC


def test_models_lists_both_and_the_trees_skip_compression_with_a_reason(adult):
    ws, state = adult
    out, grouped = (subprocess.run(
        [sys.executable, "-m", "flows.cli", "--workspace", str(ws.root), *command],
        capture_output=True, text=True, check=True,
    ).stdout for command in (["models"], ["model", "ls"]))  # fmt: skip
    assert grouped == out  # the old flat name is an alias of `mloop model ls`
    lines = out.splitlines()
    assert "family" in lines[0] and "test_roc_auc" in lines[0]
    assert any(" mlp " in line and "not chosen" in line for line in lines)  # its family
    assert any("trees" in line and "champion" in line and "promoted" in line for line in lines)
    compression = state.result().compression
    assert compression.chosen is None and "trees, not a network" in compression.skipped
    table = (ws.reports / "compression.md").read_text()
    assert "| dynamic-int8 | quantizes a network's linear layers |" in table


def test_the_served_trees_answer_rows_with_gaps_as_the_registered_model(adult, tmp_path):
    """Rows of the official test file, sent as JSON with null where the file is empty, get
    the registered champion's probabilities on the prepared arrays: no skew."""
    from components.core.predict import load_registered

    ws, state = adult
    bento = state.result().bento
    test = pd.read_csv(ADULT / "adult_test.csv", skipinitialspace=True, na_values=["?"])
    gaps = test[list(GAPPY)].isna().any(axis=1).to_numpy()
    pick = np.concatenate([np.flatnonzero(gaps)[:20], np.flatnonzero(~gaps)[:20]])
    rows = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in test.drop(columns="income").iloc[pick].to_dict("records")
    ]
    expected = load_registered("models:/adult-income@champion")(
        load_split(ws.prepared, "test").x[pick]
    )
    with served(bento.bento_tag, tmp_path / "log.sqlite") as (port, _):
        status, body = post(port, json.dumps({"rows": rows}).encode(), "predict_rows")
        assert status == 200, body
        assert body["model_version"] == bento.model_version
        got = np.array([p["probabilities"] for p in body["predictions"]])
        np.testing.assert_allclose(got, expected, atol=1e-6)
        # A gap in a column whose rule is fail (the default) is a 400 naming the column.
        bad = json.dumps({"rows": [{**rows[0], "age": None}]}).encode()
        status, body = post(port, bad, "predict_rows")
        assert status == 400 and "age is required" in json.dumps(body)
        # why, in SHAP values of the trees, per source column, with the row's own values
        status, why = post(port, json.dumps({"rows": rows[:2]}).encode(), "explain")
        assert status == 200 and why["method"] == "tree-shap", why
        np.testing.assert_allclose([p["probabilities"] for p in why["predictions"]], got[:2],
                                   atol=1e-6)  # fmt: skip
        columns = [a["column"] for a in why["explanations"][0]["attributions"]]
        assert sorted(columns) == sorted(c for c in test.columns if c != "income")
        gap = next(a for a in why["explanations"][0]["attributions"] if a["value"] is None)
        assert gap["column"] in GAPPY  # a gap is explained as the trees route it
