"""The ``mloop`` command: fast help, and bad params refused before any server starts."""

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO, free_port

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
        "import sys; import flows.cli.app as c\n"
        "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("where", ["before", "after"])
def test_run_refuses_a_bad_key_naming_it(tmp_path, where):
    """The root's options work before the command and after it."""
    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  epochz: 3\n")
    option = ["--workspace", str(tmp_path)]
    args = [*option, "run"] if where == "before" else ["run", *option]
    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 2, out.stderr
    assert "train.epochz: unknown key" in out.stderr
    assert not (tmp_path / "data").exists()


def test_version_groups_aliases_and_help_with_defaults():
    from importlib.metadata import version

    assert _mloop("--version").stdout.strip() == f"mloop {version('mloop')}"
    grouped = _mloop("data", "--help").stdout
    for command in ("ingest", "harvest", "batches", "validate"):
        assert command in grouped
    assert all(c in _mloop("model", "--help").stdout for c in ("ls", "promote", "rollback"))
    help_ = _mloop("traffic", "--help", env_extra={"COLUMNS": "200"}).stdout
    assert "[default: 50.0]" in help_ and "requests per second" in help_
    old = _mloop("lineage", "--help").stdout  # the flat name of a release ago
    assert "NAME@ALIAS" in old
    wrong = _mloop("rnu")
    assert wrong.returncode == 2 and "No such command 'rnu'" in wrong.stderr


def test_params_given_after_the_command_is_the_file_read(tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text("data:\n  sourze: digits\n")
    out = _mloop("--workspace", str(tmp_path), "data", "batches", "--params", str(other))
    assert out.returncode == 2 and "data.sourze: unknown key" in out.stderr


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


def _mloop(*args, cwd=REPO, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, cwd=cwd,
        env=env,
    )  # fmt: skip


def test_validate_command_passes_good_data_and_names_faults(tmp_path):
    import hashlib

    from tests.helpers.data import make_table

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


@pytest.mark.integration
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


def _one_clear_line(out, code: int, words: str) -> None:
    """Exit ``code``, ``words`` on stderr, and no traceback."""
    assert out.returncode == code, out.stdout + out.stderr
    assert words in out.stderr, out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def test_user_errors_are_one_clear_line(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "params.yaml").write_text("")
    _one_clear_line(_mloop("--workspace", str(ws), "run"), 2, "params.yaml: empty")
    (ws / "params.yaml").write_text(
        "data:\n  source: tabular\n  tabular: {path: gone.csv, label: y}\n"
    )
    _one_clear_line(_mloop("--workspace", str(ws), "run"), 1, "no such file")
    assert not (ws / "data").exists()
    (ws / "params.yaml").write_text("{}\n")
    _one_clear_line(_mloop("--workspace", str(ws), "rollback"), 1, "nothing to roll back")
    for special in ("/dev/zero", "/dev/null"):
        out = _mloop("--workspace", str(ws), "validate", "--data", special)
        _one_clear_line(out, 1, "not a regular file")
    verbose = _mloop("--workspace", str(ws), "--verbose", "lineage", "bad")
    assert verbose.returncode == 1 and "NAME@ALIAS" in verbose.stderr


def test_a_second_run_in_a_busy_workspace_is_refused_at_once(tmp_path):
    """Another process holds the workspace: run, a stage and train refuse with who holds it."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "params.yaml").write_text("{}\n")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from pathlib import Path\n"
         "from components.core.paths import Workspace\n"
         "from components.core.workspace_lock import workspace_lock\n"
         f"with workspace_lock(Workspace(Path({str(ws)!r})), 'the test holder'):\n"
         "    print('held', flush=True); time.sleep(120)\n"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        _one_clear_line(_mloop("--workspace", str(ws), "run"), 1, "is busy: the test holder")
        _one_clear_line(_mloop("--workspace", str(ws), "train"), 1, "is busy: the test holder")
        env = {**os.environ, "MLOOP_WORKSPACE": str(ws)}
        stage = subprocess.run([sys.executable, "-m", "pipelines.prepare"], capture_output=True,
                               text=True, cwd=REPO, env=env)  # fmt: skip
        _one_clear_line(stage, 1, f"(pid {holder.pid}")
        assert not (ws / "data").exists()  # nothing was written
    finally:
        holder.kill()
        holder.wait()
    from components.core.paths import Workspace
    from components.core.workspace_lock import workspace_lock

    with workspace_lock(Workspace(ws), "this test"), workspace_lock(Workspace(ws), "again"):
        pass  # free once its holder died; re-entrant within one process


@pytest.mark.integration
def test_killing_mloop_run_stops_its_prefect_server(tmp_path):
    """SIGKILL of mloop run mid-flow: the guard stops Prefect's temporary server too."""
    import signal
    import time

    from components.core import process_family
    from components.serve import supervisor

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "params.yaml").write_text("train:\n  epochs: 50\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    run = supervisor.start_process(
        [sys.executable, "-m", "flows.cli", "--workspace", str(ws), "run"], tmp_path / "run.out",
        env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            running = [process_family.describe(p) for p in process_family.members(run.family)]
            if any("prefect" in c and "uvicorn" in c for c in running):
                break
            assert run.poll() is None, (tmp_path / "run.out").read_text()
            time.sleep(0.5)
        else:
            raise AssertionError("Prefect's server never started")
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
        deadline = time.monotonic() + 45
        while process_family.members(run.family) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = [process_family.describe(p) for p in process_family.members(run.family)]
        assert left == [], left
    finally:
        supervisor.stop(run)


def test_a_data_error_in_run_ends_on_one_line_and_verbose_shows_the_traceback(tmp_path):
    """Crowd labels in conflict stop the run on one line naming a text and the setting to
    declare; the orchestrator's tracebacks stay off the terminal unless --verbose."""
    import pandas as pd
    import yaml

    texts = [f"message number {i} about {'rain' if i % 2 else 'sun'}" for i in range(200)]
    labels = ["a" if i % 2 else "b" for i in range(200)]
    texts += ["@united thanks!"] * 2
    labels += ["positive", "neutral"]
    pd.DataFrame({"text": texts, "label": labels}).to_csv(tmp_path / "t.csv", index=False)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"].update(source="text", text={"path": "t.csv", "vocab_size": 200})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "PREFECT_", "BENTOML_", "MLOOP_"))}  # fmt: skip
    cli = [sys.executable, "-m", "flows.cli", "--workspace", str(tmp_path)]
    quiet = subprocess.run([*cli, "run"], capture_output=True, text=True, cwd=REPO, env=env,
                           timeout=600)  # fmt: skip
    said = quiet.stdout + quiet.stderr
    assert quiet.returncode == 1, said
    assert "Traceback" not in said, said
    (failed,) = [line for line in said.splitlines() if "the retrain flow failed" in line]
    assert (
        "1 text appears under two or more labels (2 rows), e.g. '@united thanks!' as"
        " neutral and positive; declare data.text.conflicts: drop or majority" in failed
    )
    assert len(said.splitlines()) <= 6, said
    loud = subprocess.run([*cli, "--verbose", "run"], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=600)  # fmt: skip
    assert loud.returncode == 1 and "Traceback" in loud.stdout + loud.stderr


@pytest.mark.parametrize(
    ("kind", "route"),
    [("image", "/predict"), ("tabular", "/predict_rows"), ("text", "/predict_text")],
)
def test_the_closing_hint_names_the_route_of_the_data_kind(tmp_path, kind, route):
    import json

    from components.core.paths import Workspace
    from flows.cli.loop import serve_hint

    ws = Workspace(tmp_path)
    ws.prepared.mkdir(parents=True)
    (ws.prepared / "meta.json").write_text(json.dumps({"kind": kind}))
    assert serve_hint(ws).endswith(f"http://127.0.0.1:3000{route})")
