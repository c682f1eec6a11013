"""``dvc repro`` runs every stage on a fresh copy of the project; a second run runs none."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _project_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    return [f for f in out.stdout.splitlines() if (REPO / f).is_file()]


def test_dvc_repro_twice(tmp_path):
    project = tmp_path / "project"
    for name in _project_files():
        if name == "dvc.lock":
            continue
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, project / name)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["epochs"] = 3
    params["compress"].update(latency_repeats=10, finetune_epochs=2)
    params["compress"]["distill"]["epochs"] = 3
    (project / "params.yaml").write_text(yaml.safe_dump(params))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BENTOML_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(project)  # the stages import the copy's code

    def run(*args):
        return subprocess.run(
            args, cwd=project, env=env, capture_output=True, text=True, timeout=900
        )

    assert run("git", "init", "-q").returncode == 0
    first = run("dvc", "repro")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for stage in ("prepare", "validate", "train", "evaluate", "register", "compress", "package",
                  "monitor"):  # fmt: skip
        assert f"Running stage '{stage}'" in first.stdout
    assert (project / "metrics.json").is_file()
    assert (project / ".mloop" / "mlflow.db").is_file()  # the embedded default store

    second = run("dvc", "repro")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date" in second.stdout
