"""``mloop ui|tensorboard|env``: the peers' own tools, pointed at the workspace."""

from __future__ import annotations

import os
import subprocess
import sys

from flows.cli.session import Session

EXPORTED = ("MLFLOW_TRACKING_URI", "BENTOML_HOME", "PREFECT_HOME", "MLOOP_INFERENCE_LOG",
            "PREFECT_SERVER_ANALYTICS_ENABLED")  # fmt: skip


def ui(s: Session, host: str, port: int) -> int:
    s.ws  # noqa: B018 -- sets MLFLOW_TRACKING_URI to the workspace's store
    uri = os.environ["MLFLOW_TRACKING_URI"]
    print(f"mloop: MLflow UI on http://{host}:{port} (Ctrl-C stops it)", flush=True)
    return subprocess.call(["mlflow", "ui", "--backend-store-uri", uri, "--host", host,
                            "--port", str(port)])  # fmt: skip


def tensorboard(s: Session, host: str, port: int) -> int:
    logs = s.ws.tensorboard
    if not logs.is_dir():
        print(f"mloop tensorboard: no training logs in {logs} yet: train first (mloop run)",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"mloop: TensorBoard over {logs} on http://{host}:{port} (Ctrl-C stops it)",
          flush=True)  # fmt: skip
    return subprocess.call([sys.executable, "-m", "tensorboard.main", "--logdir", str(logs),
                            "--host", host, "--port", str(port)])  # fmt: skip


def env(s: Session) -> int:
    s.ws  # noqa: B018 -- sets the environment printed here
    for key in EXPORTED:
        print(f"export {key}={os.environ[key]}")
    return 0
