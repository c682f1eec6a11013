"""The trainer's promises: a killed run resumes to the same result; DDP on 2 CPU processes."""

import json
import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest
import torch
import yaml

from components.core.families import DataSpec, NetSpec
from components.core.paths import Workspace
from components.prepare.stage import prepare_stage
from components.train.models import build_net
from tests.helpers import REPO, small_params

pytestmark = pytest.mark.slow


def test_resnet_takes_gray_and_rgb_images():
    for shape in ((8, 8), (3, 32, 32)):
        data = DataSpec("image", shape, 10)
        net = build_net(NetSpec.of("resnet", data, width=8, blocks=(1, 1))).eval()
        assert net(torch.rand(2, *shape) * 255).shape == (2, 10)


def _project(tmp_path, **train) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    ws.root.mkdir(parents=True)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train"].update({"epochs": 12, **train})
    ws.params.write_text(yaml.safe_dump(raw))
    prepare_stage(small_params(), ws)
    return ws


def _mloop_env() -> dict[str, str]:
    # The subprocess finds the workspace's own store (.mloop/mlflow.db) by default.
    return {k: v for k, v in os.environ.items() if not k.startswith(("BENTOML", "MLFLOW"))}


def _mloop(ws, *args, env=None, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "--workspace", str(ws.root), *args],
        cwd=REPO, env=env or _mloop_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, **kw,
    )  # fmt: skip


def _val_acc(ws) -> float:
    return json.loads(ws.train_record.read_text())["val_accuracy"]


def test_a_killed_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    ws = _project(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws.mlflow_db}")
    full = _mloop(ws, "train")
    assert full.wait(timeout=300) == 0, full.stdout.read()
    reference = _val_acc(ws)

    killed = _mloop(ws, "train", start_new_session=True)
    seen = ""
    deadline = time.monotonic() + 300
    while "epoch   5/" not in seen and time.monotonic() < deadline:
        seen += killed.stdout.readline()
    os.killpg(killed.pid, signal.SIGKILL)  # no chance to clean up, as in a lost machine
    killed.wait()
    run_id = json.loads((ws.checkpoints / "run.json").read_text())["run_id"]
    assert mlflow.get_run(run_id).info.status == "RUNNING"  # what a kill leaves behind

    resumed = _mloop(ws, "train", "--resume")
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    assert "resuming" in out and "epoch   1/" not in out  # it did not start over
    assert abs(_val_acc(ws) - reference) <= 0.01
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in mlflow.MlflowClient().get_metric_history(run_id, "val/acc")]
    assert max(steps) == 12 and 5 in steps


def test_resume_without_a_checkpoint_says_so(tmp_path):
    ws = _project(tmp_path)
    out = _mloop(ws, "train", "--resume").communicate(timeout=120)[0]
    assert "no checkpoint to resume from" in out


def test_ddp_on_two_cpu_processes(tmp_path, monkeypatch):
    single = _project(tmp_path / "single")
    assert _mloop(single, "train").wait(timeout=300) == 0
    ddp = _project(tmp_path / "ddp", accelerator="cpu", devices=2, strategy="ddp")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ddp.mlflow_db}")
    proc = _mloop(ddp, "train")
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out
    assert "DDP worker done" in out  # the second process ran
    runs = mlflow.search_runs(experiment_names=["digits"], output_format="list")
    assert len(runs) == 1  # rank zero alone tracks
    assert abs(_val_acc(ddp) - _val_acc(single)) <= 0.03


def test_sweep_leaves_nested_trials_and_a_best_params_file(tmp_path, monkeypatch):
    """8 trials, 2 at a time: Prefect tasks in 2 processes sharing one Optuna study."""
    ws = _project(tmp_path, epochs=4)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws.mlflow_db}")
    proc = _mloop(ws, "sweep", "--trials", "8", "--parallel", "2")
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out
    runs = mlflow.search_runs(experiment_names=["digits"], output_format="list")
    (parent,) = [r for r in runs if r.info.run_name == "sweep"]
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(trials) == 8
    assert all(r.info.status == "FINISHED" for r in trials)
    states = {r.data.tags["optuna.state"] for r in trials}
    assert states <= {"COMPLETE", "PRUNED"} and "COMPLETE" in states
    best = yaml.safe_load((ws.root / "best_params.yaml").read_text())
    assert best["train"].keys() == {"learning_rate", "cnn", "dropout"}
    assert best["train"]["cnn"].keys() == {"width"}
    assert best["train"]["cnn"]["width"] in (16, 32, 64)
    assert 3e-4 <= best["train"]["learning_rate"] <= 1e-2
    completed = [r.data.metrics["objective"] for r in trials if "objective" in r.data.metrics]
    assert parent.data.metrics["best_val_acc"] == max(completed)
    assert parent.info.status == "FINISHED" and parent.data.params["sweep.parallel"] == "2"
    numbers = sorted(int(r.info.run_name.split("-")[1]) for r in trials)
    assert numbers == list(range(8))  # one study: every trial got its own number
    assert "sweep" in out and "trial" in out


def test_four_trials_fan_out_over_a_two_worker_dask_cluster(tmp_path):
    """The cluster MLOOP_DASK_ADDRESS names runs the trials: both workers, two at once."""
    from distributed import Client, LocalCluster

    ws = _project(tmp_path, epochs=4)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:  # fmt: skip
        workers = set(client.run(os.getpid).values())
        env = {**_mloop_env(), "MLOOP_DASK_ADDRESS": cluster.scheduler_address}
        proc = _mloop(ws, "sweep", "--trials", "4", "--parallel", "2", env=env)
        out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out
    store = mlflow.MlflowClient(f"sqlite:///{ws.mlflow_db}")
    runs = store.search_runs([store.get_experiment_by_name("digits").experiment_id])
    trials = [r for r in runs if r.info.run_name.startswith("trial-")]
    assert len(trials) == 4 and all(r.info.status == "FINISHED" for r in trials)
    ran_on = {int(r.data.tags["mloop.worker"].rsplit(":", 1)[1]) for r in trials}
    assert ran_on == workers  # every trial on a cluster worker, and both workers used
    spans = sorted((r.info.start_time, r.info.end_time) for r in trials)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))  # two at once
