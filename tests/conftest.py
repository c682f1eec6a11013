"""Shared fixtures: real local stores in temporary folders, tiny but real data.

Environment for the libraries that read it once at import (Prefect, BentoML)
is set here, before any test imports them: the suite never touches the
developer's own ~/.prefect, ~/bentoml or MLflow store.
"""

from __future__ import annotations

import os
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
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
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

from components.core.config import Params  # noqa: E402
from components.core.paths import Workspace  # noqa: E402
from tests.helpers import REPO, free_port, small_params  # noqa: E402, F401 (fixtures use them)

# Test tiers, decided here in one place (pytest -m unit | integration | e2e):
E2E_MODULES = {"test_loop", "test_closed_loop", "test_server_mode", "test_run_many"}
INTEGRATION_MODULES = {"test_training", "test_compression", "test_registry", "test_trainer",
                       "test_benchmarks"}  # fmt: skip
TRAINED = {"trained_ws", "trained_copy", "loop", "splits"}  # fixtures that train a model


def pytest_collection_modifyitems(items) -> None:
    """Give every test exactly one tier: e2e, integration (trains, or marked), or unit."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        marked = {m.name for m in item.iter_markers()} & {"unit", "integration", "e2e"}
        if marked:
            tier = max(marked, key=["unit", "integration", "e2e"].index)
        elif module in E2E_MODULES or "dvc_repro" in item.name:
            tier = "e2e"
        elif module in INTEGRATION_MODULES or TRAINED & set(item.fixturenames):
            tier = "integration"
        else:
            tier = "unit"
        item.add_marker(getattr(pytest.mark, tier))


def _multiprocessing_helper(pid: int) -> bool:
    """Python's own resource tracker or fork server of this process: they end with it."""
    from components.core import process_family

    described = process_family.describe(pid)
    helper = "multiprocessing.resource_tracker" in described or "forkserver" in described
    state = process_family.stat(pid)
    return helper and state is not None and state.parent == os.getpid()


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    """Fail the run if any process the tests started outlives them (then stop it)."""
    from components.core import process_family

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
    from components.evaluate.stage import evaluate_stage
    from components.prepare.stage import prepare_stage
    from components.train.stage import train_stage

    ws = Workspace(tmp_path_factory.mktemp("trained"))
    ws.state.mkdir(parents=True, exist_ok=True)
    params = small_params()
    with pytest.MonkeyPatch.context() as mp:  # only while it is made: tests choose their store
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws.mlflow_db}")
        prepare_stage(params, ws)
        train_stage(params, ws)
        evaluate_stage(params, ws)
    return ws, params


@pytest.fixture
def trained_copy(trained_ws, tmp_path, monkeypatch) -> tuple[Workspace, Params]:
    """A fresh copy of the trained workspace, its MLflow store included, for a test that
    registers, promotes or rewrites files: the shared one stays as it was."""
    import shutil

    source, params = trained_ws
    ws = Workspace(tmp_path / "trained-copy")
    shutil.copytree(source.root, ws.root, ignore=shutil.ignore_patterns("*.lock"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws.mlflow_db}")
    return ws, params


@pytest.fixture
def use_store(monkeypatch):
    """Point MLflow at a given workspace's store for one test."""

    def point(ws: Workspace) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws.mlflow_db}")

    return point
