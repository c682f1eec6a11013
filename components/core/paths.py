"""Where every file of the loop lives: one place, so no stage invents a path.

The workspace root is the current directory unless ``MLOOP_WORKSPACE`` names
another. Everything the loop writes is below it; ``.mloop/`` holds the embedded
servers' state (MLflow's SQLite store and artifacts, the BentoML store and
Prefect's home), all git-ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from components.core.settings import settings


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def current(cls) -> Workspace:
        return cls(settings().workspace.resolve())

    # Inputs and versioned stage outputs (tracked by DVC).
    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def prepared(self) -> Path:
        return self.root / "data" / "prepared"

    @property
    def batches(self) -> Path:
        """Accepted batches of new data, one folder each (``mloop ingest``, ``mloop harvest``)."""
        return self.root / "data" / "batches"

    @property
    def incoming(self) -> Path:
        """The drop folder: each file or folder put here is ingested by the next retrain."""
        return self.root / "data" / "incoming"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def model_file(self) -> Path:
        return self.models / "model.pt"

    @property
    def train_record(self) -> Path:
        return self.models / "train.json"

    @property
    def checkpoints(self) -> Path:
        """One Lightning checkpoint per epoch (``last.ckpt``) and the run it belongs to."""
        return self.models / "checkpoints"

    @property
    def compressed_dir(self) -> Path:
        return self.models / "compressed"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def quarantine(self) -> Path:
        """Rejected rows and files, each batch in its own folder with a reason file."""
        return self.root / "quarantine"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    # Embedded servers' state.
    @property
    def state(self) -> Path:
        return self.root / ".mloop"

    @property
    def mlflow_db(self) -> Path:
        return self.state / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.state / "mlartifacts"

    @property
    def bentoml_home(self) -> Path:
        return self.state / "bentoml"

    @property
    def prefect_home(self) -> Path:
        return self.state / "prefect"

    @property
    def inference_log(self) -> Path:
        """Every prediction the service answered (SQLite; see components.inference_log)."""
        return self.state / "inference.sqlite"

    @property
    def registry_lock(self) -> Path:
        """Gate decisions' lock where the store gives none (MLOOP_REGISTRY_LOCK overrides)."""
        return self.state / "registry.lock"

    @property
    def run_lock(self) -> Path:
        """One run of the loop at a time in this workspace (``core/workspace_lock.py``)."""
        return self.state / "run.lock"

    @property
    def run_lock_holder(self) -> Path:
        return self.state / "run.lock.json"

    @property
    def batch_lock(self) -> Path:
        """Batches are numbered and renamed into place under it (``prepare/batches.py``)."""
        return self.state / "batches.lock"

    @property
    def incoming_ledger(self) -> Path:
        """The drop folder's items seen before, by content hash."""
        return self.state / "incoming.json"

    @property
    def references(self) -> Path:
        """A sample of each data version's train split: the drift reference of its models."""
        return self.state / "references"

    @property
    def tensorboard(self) -> Path:
        """Lightning's TensorBoard logs, one folder per training run (``mloop tensorboard``)."""
        return self.state / "tensorboard"

    @property
    def optuna(self) -> Path:
        """Optuna's journal files, one per ``mloop sweep``."""
        return self.state / "optuna"

    @property
    def serve_log(self) -> Path:
        """``mloop serve``'s server output (rotated)."""
        return self.state / "serve.log"

    @property
    def prefect_server_log(self) -> Path:
        """The output of the Prefect server ``mloop deploy`` starts."""
        return self.state / "prefect-server.log"

    @property
    def retrain_log(self) -> Path:
        """A workspace's ``mloop run`` output under ``mloop run-many``."""
        return self.state / "retrain.log"

    @property
    def labellers(self) -> Path:
        """The labeller tokens POST /feedback asks for (mode 0600; core/credentials.py)."""
        return self.state / "labellers.json"

    @property
    def model_pointer(self) -> Path:
        """The model ``mloop serve``'s workers serve and follow (``package/served_model.py``)."""
        return self.state / "served_model.json"

    @property
    def monitor_state(self) -> Path:
        """Where the monitor left off in the inference log, and its last retrain."""
        return self.state / "monitor.json"

    def report(self, name: str) -> Path:
        return self.reports / name


_FILLED: set[str] = set()  # what configure_environment set, as opposed to the user


def configure_environment(ws: Workspace) -> None:
    """Point the embedded servers at the workspace unless the user chose others.

    Called once at each entry point, before MLflow, BentoML or Prefect is
    imported: these libraries read their settings when first imported.
    A variable already set (a real server, another home) is left alone.
    """
    defaults = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{ws.mlflow_db}",
        "BENTOML_HOME": str(ws.bentoml_home),
        "MLOOP_INFERENCE_LOG": str(ws.inference_log),
        "MLOOP_LABELLER_TOKENS": str(ws.labellers),
        "PREFECT_HOME": str(ws.prefect_home),
        # The first start of Prefect's temporary server runs its migrations (~40 s here).
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        # Our stages' and flows' loggers go to the flow run's log in Prefect's UI too.
        "PREFECT_LOGGING_EXTRA_LOGGERS": "components,flows",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",  # a stage run outside a flow
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "BENTOML_DO_NOT_TRACK": "true",
        "DO_NOT_TRACK": "1",
        "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false",
        "GIT_PYTHON_REFRESH": "quiet",
        "TQDM_DISABLE": "1",
    }
    for key, value in defaults.items():
        if key not in os.environ:
            os.environ[key] = value
            _FILLED.add(key)
    for folder in (ws.state, ws.bentoml_home, ws.prefect_home, ws.reports):
        folder.mkdir(parents=True, exist_ok=True)


def own_environment() -> dict[str, str]:
    """This process's environment less the workspace defaults ``configure_environment`` set.

    For a child process working in another workspace: it sets its own defaults,
    and keeps every server the user chose.
    """
    return {key: value for key, value in os.environ.items() if key not in _FILLED}
