"""The ``mloop`` command: fast help, and bad params refused before any server starts."""

import subprocess
import sys

from tests.conftest import REPO

HEAVY = ("torch", "lightning", "mlflow", "prefect", "bentoml", "evidently", "great_expectations")


def test_help_lists_the_commands():
    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0
    for command in ("run", "ui", "serve", "env"):
        assert command in out.stdout


def test_help_imports_no_heavy_library():
    code = (
        "import sys; import flows.cli as c\n"
        "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_run_refuses_a_bad_key_naming_it(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  epochz: 3\n")
    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--workspace", str(tmp_path), "run"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode == 2
    assert "train.epochz: unknown key" in out.stderr
    assert not (tmp_path / "data").exists()


def test_env_points_tools_at_the_workspace(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--workspace", str(tmp_path), "env"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert f"export BENTOML_HOME={tmp_path}/.mloop/bentoml" in out.stdout
    assert f"export MLFLOW_TRACKING_URI=sqlite:///{tmp_path}/.mloop/mlflow.db" in out.stdout
