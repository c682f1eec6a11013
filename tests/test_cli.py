"""The ``mloop`` command: fast help, and bad params refused before any server starts."""

import os
import subprocess
import sys

from tests.conftest import REPO, free_port

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


def _mloop(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, cwd=cwd
    )


def test_validate_command_passes_good_data_and_names_faults(tmp_path):
    import hashlib

    from tests.test_validation import make_table

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "params.yaml").write_text("validate:\n  allowed_labels: [a, b, c]\n")
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    make_table().to_csv(good, index=False)
    table = make_table()
    table.loc[:3, "y"] = "zebra"
    table.to_csv(bad, index=False)
    (tmp_path / "empty.csv").write_bytes(b"")

    ok = _mloop("--workspace", str(ws), "validate", "--data", str(good), "--label", "y")
    assert ok.returncode == 0, ok.stderr
    assert "PASSED" in ok.stdout

    before = hashlib.sha256(bad.read_bytes()).hexdigest()
    failed = _mloop("--workspace", str(ws), "validate", "--data", str(bad), "--label", "y")
    assert failed.returncode == 1
    assert "expect_column_values_to_be_in_set on samples._label" in failed.stderr
    assert "validation.html" in failed.stderr and "quarantine" in failed.stderr
    assert hashlib.sha256(bad.read_bytes()).hexdigest() == before

    empty = _mloop("--workspace", str(ws), "validate", "--data", str(tmp_path / "empty.csv"),
                   "--label", "y")  # fmt: skip
    assert empty.returncode == 1 and "empty file" in empty.stderr
    assert len(list((ws / "quarantine").iterdir())) == 2


def test_lineage_names_an_unknown_model(tmp_path):
    out = _mloop("--workspace", str(tmp_path), "lineage", "nope@champion")
    assert out.returncode == 1 and "nope@champion" in out.stderr


def test_deploy_names_an_unreachable_prefect_server_and_exits(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    url = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_API_URL=url)
    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--workspace", str(tmp_path), "deploy"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"mloop: serving to {url} failed: ConnectError" in out.stderr
    assert "Traceback" not in out.stderr
