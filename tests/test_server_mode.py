"""Server mode against real servers on loopback.

PostgreSQL (Debian's package), an MLflow tracking server with its backend store on
it and artifacts proxied to a destination folder, a Prefect server on it, a
process work pool and a worker. ``mloop deploy --pool`` registers the
deployments, ``prefect deployment run`` triggers ``retrain`` through the server,
the worker runs it; the run, the registered version and the champion alias are
read back from the MLflow server, the COMPLETED flow run from the Prefect server,
and both from PostgreSQL's own tables. Everything is stopped at the end.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import yaml

from components.core.paths import Workspace
from components.serve import supervisor
from tests.helpers import REPO, free_port

pytestmark = pytest.mark.slow

PASSWORD = "mloop-test-secret"
BIN = Path(sys.executable).parent


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@contextmanager
def postgres() -> Iterator[tuple[str, callable]]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 with databases ``mlflow`` and ``prefect``.

    Yields ``user:password@host:port`` and a function running SQL in a database.
    PostgreSQL refuses to run as root, so under root the server runs as ``postgres``.
    """
    pg = _postgres_bin()
    if pg is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's postgresql (.ci/run installs it)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="mloop-pg-"))  # outside pytest's 0700 folders
    as_server: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_server = ["runuser", "-u", "postgres", "--"]
    (root / "pw").write_text(PASSWORD)
    if as_server:
        shutil.chown(root / "pw", "postgres")
    port = free_port()
    data = root / "data"

    def run(*command: str, **kw) -> str:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, **kw)
        assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
        return done.stdout

    run(*as_server, str(pg / "initdb"), "-D", str(data), "-U", "mloop", f"--pwfile={root}/pw",
        "--auth=scram-sha-256", "-E", "UTF8")  # fmt: skip
    run(*as_server, str(pg / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
        f"-h 127.0.0.1 -p {port} -k {root}", "start")  # fmt: skip
    client_env = {**os.environ, "PGPASSWORD": PASSWORD}

    def sql(database: str, query: str) -> str:
        return run(str(pg / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "mloop", "-d",
                   database, "-tAc", query, env=client_env).strip()  # fmt: skip

    try:
        for database in ("mlflow", "prefect"):
            run(str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mloop",
                database, env=client_env)  # fmt: skip
        yield f"mloop:{PASSWORD}@127.0.0.1:{port}", sql
    finally:
        subprocess.run([*as_server, str(pg / "pg_ctl"), "-D", str(data), "-m", "fast", "-w",
                        "stop"], capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def _server(stack: ExitStack, command: list[str], log: Path, env: dict, health: str):
    process = supervisor.start_process(command, log, env)
    stack.callback(supervisor.stop, process)
    supervisor.wait_http(health, process, timeout_s=300, log_file=log)
    return process


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read())


def _write_params(ws: Workspace) -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train"]["epochs"] = 3
    raw["compress"].update(latency_repeats=20, finetune_epochs=1, variants=["onnx"])
    ws.params.write_text(yaml.safe_dump(raw))


def test_retrain_deployed_to_a_work_pool_runs_on_the_servers(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.root.mkdir()
    _write_params(ws)
    artifacts = tmp_path / "artifacts"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    base.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false")
    with ExitStack() as stack:
        auth, sql = stack.enter_context(postgres())
        ml_port, pf_port = free_port(), free_port()
        mlflow_url, prefect_api = f"http://127.0.0.1:{ml_port}", f"http://127.0.0.1:{pf_port}/api"
        _server(stack, [str(BIN / "mlflow"), "server", "--backend-store-uri",
                        f"postgresql://{auth}/mlflow", "--artifacts-destination", str(artifacts),
                        "--host", "127.0.0.1", "--port", str(ml_port), "--workers", "1"],
                tmp_path / "mlflow.log", base, f"{mlflow_url}/health")  # fmt: skip
        server_env = {
            **base, "PREFECT_HOME": str(tmp_path / "prefect-server"),
            "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://{auth}/prefect",
        }  # fmt: skip
        _server(stack, [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                        "--port", str(pf_port)],
                tmp_path / "prefect.log", server_env, f"{prefect_api}/health")  # fmt: skip

        # The team's side: two settings point mloop at the servers.
        env = {**base, "PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": mlflow_url,
               "PREFECT_HOME": str(tmp_path / "prefect-client"), "PREFECT_LOGGING_LEVEL": "INFO",
               "PREFECT_WORKER_QUERY_SECONDS": "2", "COLUMNS": "250"}  # fmt: skip
        deployed = subprocess.run(
            [sys.executable, "-m", "flows.cli", "--workspace", str(ws.root), "deploy", "--pool",
             "mloop"], capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
        )  # fmt: skip
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert "created the process work pool 'mloop'" in deployed.stdout
        assert "retrain/scheduled" in deployed.stdout and "monitor/drift-check" in deployed.stdout

        worker_log = tmp_path / "worker.log"
        worker = supervisor.start_process(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", "mloop"], worker_log, env
        )
        stack.callback(supervisor.stop, worker)
        triggered = subprocess.run(
            [sys.executable, "-m", "prefect", "deployment", "run", "retrain/scheduled"],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert triggered.returncode == 0, triggered.stdout + triggered.stderr
        run_id = re.search(r"UUID: ([0-9a-f-]{36})", triggered.stdout).group(1)

        deadline, state = time.monotonic() + 900, None
        while time.monotonic() < deadline and worker.poll() is None:
            state = _get(f"{prefect_api}/flow_runs/{run_id}")["state_type"]
            if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                break
            time.sleep(3)
        assert state == "COMPLETED", f"{state}\n{worker_log.read_text()[-4000:]}"

        # The Prefect server's view, and its tables in PostgreSQL.
        flow_run = _get(f"{prefect_api}/flow_runs/{run_id}")
        assert flow_run["parameters"]["workspace"] == str(ws.root)
        deployment = _get(f"{prefect_api}/deployments/{flow_run['deployment_id']}")
        assert deployment["work_pool_name"] == "mloop" and deployment["name"] == "scheduled"
        assert sql("prefect", f"select state_type from flow_run where id = '{run_id}'") == (
            "COMPLETED"
        )
        assert sql("prefect", "select count(*) from deployment") == "2"

        # The MLflow server's view: the training run, version 1, the aliases on it.
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=mlflow_url)
        experiment = client.get_experiment_by_name("digits")
        runs = client.search_runs([experiment.experiment_id], "attributes.run_name LIKE 'train-%'")
        assert len(runs) == 1 and runs[0].info.status == "FINISHED"
        assert runs[0].info.artifact_uri.startswith("mlflow-artifacts:")
        champion = client.get_model_version_by_alias("digits-classifier", "champion")
        assert champion.version == "1" and champion.run_id == runs[0].info.run_id
        challenger = client.get_model_version_by_alias("digits-classifier", "challenger")
        assert challenger.version == "1"
        compressed = client.get_model_version_by_alias("digits-classifier", "champion-compressed")
        assert compressed.tags["mloop.parent_version"] == "1"
        assert sql("mlflow", "select count(*) from registered_model_aliases") == "3"
        # Artifacts went through the server to its destination, none into the workspace.
        assert list(artifacts.rglob("MLmodel")), "no model artifacts at the destination"
        assert not ws.mlflow_artifacts.exists() and not ws.mlflow_db.exists()
