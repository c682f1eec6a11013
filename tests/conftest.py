"""Shared fixtures: real local stores in temporary folders, tiny but real data.

Environment for the libraries that read it once at import (Prefect, BentoML)
is set here, before any test imports them: the suite never touches the
developer's own ~/.prefect, ~/bentoml or MLflow store.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="mloop-tests-"))
os.environ.update(
    {
        "PREFECT_HOME": str(_SESSION_DIR / "prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "240",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_UI_ENABLED": "false",
        "BENTOML_HOME": str(_SESSION_DIR / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "DO_NOT_TRACK": "1",
        "GIT_PYTHON_REFRESH": "quiet",
    }
)
# Every process the tests start carries this family token: at the end no process of
# the family may be alive (a test that leaves a server running is a failing test).
_FAMILY = uuid.uuid4().hex[:16]
os.environ["MLOOP_PROCESS_FAMILY"] = _FAMILY
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("MLOOP_WORKSPACE", None)

from components.config import Params, parse_params  # noqa: E402
from components.paths import Workspace  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _multiprocessing_helper(pid: int) -> bool:
    """Python's own resource tracker or fork server of this process: they end with it."""
    from components import process_family

    described = process_family.describe(pid)
    helper = "multiprocessing.resource_tracker" in described or "forkserver" in described
    try:
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return False
    return helper and ppid == os.getpid()


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    """Fail the run if any process the tests started outlives them (then stop it)."""
    from components import process_family

    yield
    if "prefect" in sys.modules:  # Prefect's temporary server, stopped at exit otherwise
        from prefect.server.api.server import SubprocessASGIServer

        for server in list(SubprocessASGIServer._instances.values()):
            server.stop()
    left = [
        process_family.describe(pid)
        for pid in process_family.members(_FAMILY)
        if not _multiprocessing_helper(pid)
    ]
    if left:
        process_family.terminate(_FAMILY, timeout_s=10)
        pytest.fail("processes started by the tests were still running at the end:\n"
                    + "\n".join(left), pytrace=False)  # fmt: skip


def small_params(**sections) -> Params:
    """The real params.yaml, shrunk for speed; keyword arguments override sections."""
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train"]["epochs"] = 6
    raw["compress"].update(latency_repeats=20, finetune_epochs=2)
    raw["compress"]["distill"]["epochs"] = 3
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return parse_params(raw)


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Workspace:
    """An empty workspace with its own MLflow SQLite store."""
    ws = Workspace(tmp_path / "ws")
    ws.root.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws.mlflow_db}")
    ws.state.mkdir()
    return ws


@pytest.fixture(scope="session")
def trained_ws(tmp_path_factory) -> tuple[Workspace, Params]:
    """One prepared, trained and evaluated workspace shared by the model-level tests."""
    from components.data import prepare_stage
    from components.evaluation import evaluate_stage
    from components.training import train_stage

    ws = Workspace(tmp_path_factory.mktemp("trained"))
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws.mlflow_db}")
    ws.state.mkdir(parents=True, exist_ok=True)
    params = small_params()
    prepare_stage(params, ws)
    train_stage(params, ws)
    evaluate_stage(params, ws)
    yield ws, params
    mp.undo()


@pytest.fixture
def use_store(monkeypatch):
    """Point MLflow at a given workspace's store for one test."""

    def point(ws: Workspace) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws.mlflow_db}")

    return point


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
