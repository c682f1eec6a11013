"""``dvc repro`` runs every stage on a fresh copy of the project; a second run runs none."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO

STAGES = ("prepare", "validate", "train", "evaluate", "register", "compress", "package", "monitor")


def _project_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    return [f for f in out.stdout.splitlines() if (REPO / f).is_file()]


@pytest.mark.slow
def test_dvc_repro_twice_then_again_after_a_change_to_the_loss(tmp_path):
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
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first.stdout
    assert (project / "metrics.json").is_file()
    assert (project / ".mloop" / "mlflow.db").is_file()  # the embedded default store

    second = run("dvc", "repro")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date" in second.stdout

    # A change to a model family's file (the digits' CNN, no params): train and everything
    # after it run again; prepare and validate do not.
    module = project / "components" / "train" / "families" / "cnn.py"
    code = module.read_text()
    line = "    hidden: int = 128  # units of the dense layer\n"
    assert line in code
    module.write_text(code.replace(line, line.replace("128", "96")))
    third = run("dvc", "repro")
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    ran = {stage for stage in STAGES if f"Running stage '{stage}'" in third.stdout}
    assert ran == set(STAGES) - {"prepare", "validate"}, third.stdout[-3000:]

    # A new batch (mloop ingest): prepare runs again and dvc.lock records the batch's files.
    import numpy as np
    from sklearn.datasets import load_digits

    def batches_entry() -> dict:
        lock = yaml.safe_load((project / "dvc.lock").read_text())
        (entry,) = [d for d in lock["stages"]["prepare"]["deps"] if d["path"] == "data/batches"]
        return entry

    before = batches_entry()
    digits = load_digits()
    np.savez(tmp_path / "new.npz", x=16 - digits.images[:200], y=digits.target[:200])
    ingest = run(sys.executable, "-m", "flows.cli", "ingest", str(tmp_path / "new.npz"))
    assert ingest.returncode == 0 and "ACCEPTED as batch-0001" in ingest.stdout, ingest.stderr
    status = run("dvc", "status", "prepare")
    assert "data/batches" in status.stdout, status.stdout
    fourth = run("dvc", "repro", "prepare")
    assert fourth.returncode == 0 and "Running stage 'prepare'" in fourth.stdout, fourth.stderr
    after = batches_entry()
    assert after["md5"] != before["md5"]
    assert after["nfiles"] == before["nfiles"] + 2  # batch-0001/data.npz and batch.json


def test_every_stage_depends_on_the_code_it_imports():
    """dvc.yaml's deps of each stage cover every project file its entry point and stage
    function import, transitively (lazy imports too): a change there reruns the stage."""
    from components.core.families import BUILTIN
    from components.core.stages import STAGES as TABLE
    from components.package.stage import SERVICE
    from tests.helpers.imports import closure, module_file

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(TABLE)
    for name, target in TABLE.items():
        roots = [f"pipelines.{name}", target.split(":")[0]]
        if name == "package":  # the Bento runs the service, built from the copied tree
            roots.append(SERVICE.split(":")[0])
        deps = [d for d in stages[name]["deps"] if isinstance(d, str)]
        reached = closure(roots)
        # Where nets are built, the registry's built-in families (imported by name) decide
        # what the stage computes; elsewhere they only check train.* sections at load.
        if "components.train.models" in reached:
            reached |= closure(list(BUILTIN.values()))
        for module in sorted(reached):
            file = module_file(module).relative_to(REPO).as_posix()
            covered = any(file == d or file.startswith(d.rstrip("/") + "/") for d in deps)
            assert covered, f"stage {name}: {file} is imported but not in its dvc.yaml deps"
