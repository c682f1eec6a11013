"""Prefect's own server for ``mloop deploy``, on loopback, over the workspace's database.

Schedules need a server that outlives one flow run. No Prefect import here: the
server's address must be in the environment before Prefect is first imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from components.serve import supervisor


def start(port: int, log_file: Path) -> subprocess.Popen:
    """Start it (in a process family: it stops with ``mloop``), wait for its health
    check, and point PREFECT_API_URL at it."""
    url = f"http://127.0.0.1:{port}/api"
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
               "--port", str(port)]  # fmt: skip
    server = supervisor.start_process(command, log_file)
    supervisor.wait_http(f"{url}/health", server, log_file=log_file)
    os.environ["PREFECT_API_URL"] = url
    return server


def stop(server: subprocess.Popen) -> None:
    supervisor.stop(server)
