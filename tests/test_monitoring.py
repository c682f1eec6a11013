"""The drift gate with real Evidently reports: clean stays quiet, shifted data is caught."""

import numpy as np
import pytest

from components.core.config import MonitorConfig
from components.core.splits import load_split
from components.monitor.drift import FEATURES, check_drift, feature_table
from components.monitor.stage import simulate_batch


@pytest.fixture(scope="module")
def splits(trained_ws):
    ws, _ = trained_ws
    return load_split(ws.prepared, "train"), load_split(ws.prepared, "test")


def test_feature_table_describes_each_image():
    x = np.zeros((3, 8, 8), dtype=np.float32)
    x[1] = 16
    table = feature_table(x, lambda b: np.eye(10)[[0, 1, 2]])
    assert list(table.columns) == [*FEATURES, "prediction"]
    assert table["max"].tolist() == [0, 16, 0]
    assert table["ink"].tolist() == [0, 1, 0]
    assert table["prediction"].tolist() == ["0", "1", "2"]


def test_simulated_batches():
    cfg = MonitorConfig(batch_size=50)
    x = np.random.default_rng(1).uniform(0, 8, size=(200, 8, 8)).astype(np.float32)
    clean = simulate_batch(x, "clean", cfg, 16.0, seed=0)
    assert len(clean) == 50 and any(np.array_equal(clean[0], row) for row in x)
    shifted = simulate_batch(x, "shift", cfg, 16.0, seed=0)
    assert np.allclose(shifted, np.clip(clean + cfg.intensity_shift, 0, 16))
    assert simulate_batch(x, "noise", cfg, 16.0, seed=0).max() <= 16.0
    with pytest.raises(ValueError, match="unknown batch kind"):
        simulate_batch(x, "rotate", cfg, 16.0, seed=0)


@pytest.mark.parametrize(("kind", "drifted"), [("clean", False), ("noise", True), ("shift", True)])
def test_drift_verdicts(splits, tmp_path, kind, drifted):
    train, test = splits
    cfg = MonitorConfig()
    reference = feature_table(train.x)
    current = feature_table(simulate_batch(test.x, kind, cfg, 16.0, seed=7))
    result = check_drift(reference, current, cfg, tmp_path / f"{kind}.html", kind)
    assert result.drifted is drifted
    assert set(result.column_scores) == set(FEATURES)
    assert (tmp_path / f"{kind}.html").stat().st_size > 10_000
    if drifted:
        assert {"mean", "ink"} <= set(result.drifted_columns)


def test_production_check_waits_for_enough_rows_and_restarts_on_a_new_log(workspace, monkeypatch):
    import json

    from components.core.inference_log import InferenceLog
    from components.monitor.production import check_production
    from tests.helpers import small_params

    monkeypatch.setenv("MLOOP_INFERENCE_LOG", str(workspace.inference_log))
    params = small_params()
    waiting = check_production(params, workspace)
    assert waiting.drift is None and "no inference log" in waiting.reason
    log = InferenceLog(workspace.inference_log)
    log.append("r1", "1", np.zeros((3, 8, 8), np.float32), [0, 0, 0], np.ones(3))
    workspace.monitor_state.write_text(json.dumps({"last_id": 500}))  # an older, larger log
    result = check_production(params, workspace)
    assert (result.rows, result.first_id, result.last_id) == (3, 1, 3)
    assert result.drift is None and not result.retrain and "3 new predictions" in result.reason
    assert json.loads(workspace.monitor_state.read_text())["last_id"] == 500  # nothing checked


def test_the_drift_report_runs_no_script_from_column_names_or_labels(tmp_path):
    import pandas as pd

    from components.monitor.drift import PREDICTION
    from tests.helpers import HOSTILE, assert_no_script_ran

    rng = np.random.default_rng(0)
    names = [HOSTILE, "x,y", "plain"]
    reference = pd.DataFrame({n: rng.normal(size=400) for n in names})
    reference[PREDICTION] = rng.choice([HOSTILE, "</script>b"], 400)
    current = reference.copy()
    current[HOSTILE] += 3  # drifts: the hostile column lands in every table of the report
    result = check_drift(reference, current, MonitorConfig(), tmp_path / "drift.html", "hostile")
    assert HOSTILE in result.drifted_columns  # results keep the names as given
    assert set(result.column_scores) == {*names, PREDICTION}
    html = (tmp_path / "drift.html").read_text()
    assert "<script>document" not in html and "<img src=x" not in html  # no tag of ours
    assert_no_script_ran(tmp_path / "drift.html", tmp_path / "profile")


def test_words_from_traffic_reach_the_artifact_as_text_not_markup(tmp_path):
    """The leaning line names words users sent: in the Prefect artifact they stay words."""
    from components.monitor.production import ProductionCheck

    hostile = "[x](javascript:alert(1))<img src=x onerror=alert(1)>|"
    check = ProductionCheck(
        rows=1, first_id=1, last_id=1, model_versions={}, drift=None, tested=0,
        prediction_drift=False, labelled=0, accuracy=None, retrain=False, reason="r",
        summary_file=tmp_path / "s.json", seconds=0.0, leaning=f"the model now leans on {hostile}",
        leaning_moved=[{"feature": hostile, "reference": 0.1, "now": 0.5, "change": 0.4}],
    )  # fmt: skip
    text = check.markdown()
    assert "<img" not in text and "](" not in text and "javascript:alert\\(1\\)" in text
    row = next(line for line in text.splitlines() if "javascript" in line and "0.500" in line)
    assert row.count(" | ") == 2  # the word's | is escaped: still three cells
