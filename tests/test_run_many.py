"""Several data sets' retrains fanned out over Dask: ``mloop run-many``.

Two workspaces (the built-in digits and a synthetic table) and one whose data
file is missing, two at a time on a local Dask cluster: both good ones end with
their own champion in their own store, the bad one fails alone and is named.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from mlflow import MlflowClient

from components.core.paths import Workspace
from tests.helpers import REPO

pytestmark = pytest.mark.slow


def _workspace(root, name: str, **sections) -> Workspace:
    ws = Workspace(root / name)
    ws.root.mkdir()
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train"]["epochs"] = 3
    raw["compress"].update(latency_repeats=20, finetune_epochs=1, variants=["onnx"])
    for section, values in sections.items():
        raw[section].update(values)
    ws.params.write_text(yaml.safe_dump(raw))
    return ws


def test_run_many_retrains_each_workspace_and_isolates_a_failure(tmp_path):
    digits = _workspace(tmp_path, "digits")
    table = _workspace(
        tmp_path, "table",
        data={"source": "synthetic", "synthetic": {"kind": "tabular", "samples": 1500,
                                                   "features": 12, "classes": 3}},
        register={"model_name": "synthetic-classifier"}, package={"service_name": "synthetic"},
    )  # fmt: skip
    missing = {"source": "tabular", "tabular": {"path": "gone.csv", "label": "y"}}
    broken = _workspace(tmp_path, "broken", data=missing)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENTOML", "MLFLOW"))}
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--workspace", str(tmp_path), "run-many",
         str(digits.root), str(table.root), str(broken.root), "--parallel", "2"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=900,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 of 3 retrains failed" in done.stderr and str(broken.root) in done.stderr
    assert "gone.csv" in done.stderr  # the failed workspace's own reason comes through
    for ws, model in ((digits, "digits-classifier"), (table, "synthetic-classifier")):
        store = MlflowClient(f"sqlite:///{ws.mlflow_db}")  # each its own embedded store
        champion = store.get_model_version_by_alias(model, "champion")
        # the first run's challenger: the network, or (the table) the candidate best on val
        chosen = json.loads(ws.report("registry.json").read_text())["version"]
        assert str(champion.version) == chosen and (ws is table or chosen == "1")
        assert [m.name for m in store.search_registered_models()] == [model]
        assert "  champion test_accuracy" in ws.retrain_log.read_text()
        # what the flow says of each workspace comes from its register record, not its output
        from flows.retrain import _gate_record

        said, score = _gate_record(ws).rsplit(" ", 1)
        assert said == f"{model} version {chosen} promoted: test_accuracy"
        assert 0.5 < float(score) <= 1
    assert not (tmp_path / ".mloop" / "mlflow.db").exists()  # nothing went to the parent's
