"""The Prefect flow ``monitor``: check production traffic for drift; drift starts ``retrain``.

Reads the inference log from where the last check stopped (components.monitor.
check_production), attaches the drift table to the flow run as a Prefect artifact,
and on drift (outside the cool-down) runs the ``retrain`` flow as a subflow, which
harvests the labelled traffic and trains on it. Drift with too little labelled traffic
to learn from starts nothing: it raises the alert "labels are needed" (an artifact
``labels-needed`` and the monitor report). A
retrain that promotes a new champion packages a new Bento; ``mloop serve`` then
restarts the service on it.

``flows.deploy`` schedules it (and ``retrain``) for ``mloop deploy``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from components.core.config import Params, load_params
from components.core.logs import setup_logging
from components.core.paths import Workspace, configure_environment
from components.core.settings import settings
from components.monitor.production import ProductionCheck, check_production
from flows.prefect_logs import flush_our_logs, send_our_logs_to_prefect
from flows.retrain import retrain

log = logging.getLogger(__name__)


@task(name="check-production", cache_policy=NO_CACHE, retries=0)
def check(params: Params, ws: Workspace) -> ProductionCheck:
    result = check_production(params, ws)
    log.info(f"[monitor] {result.summary()} ({result.seconds:.1f} s)")
    return result


@flow(name="monitor")
def monitor(params_file: str = "params.yaml", workspace: str = ".") -> ProductionCheck:
    """Drift and quality of the logged predictions since the last check; retrain on drift."""
    ws = Workspace(Path(workspace).resolve())
    configure_environment(ws)  # a worker's flow run starts here, not in the CLI
    setup_logging(settings().verbose)
    send_our_logs_to_prefect()  # the stages' lines reach the run's log in the UI
    params = load_params(params_file)
    result = check(params, ws)
    if result.drift is not None:
        create_markdown_artifact(
            key="production-drift", markdown=result.markdown(), description=result.reason
        )
    if result.alert:  # drift, and nothing labelled to learn from: say so where people look
        log.warning(f"[monitor] ALERT: {result.alert}")
        create_markdown_artifact(
            key="labels-needed", markdown=f"**Labels are needed.** {result.alert}",
            description="drift without labelled data",
        )  # fmt: skip
    if result.retrain:  # it harvests the labelled traffic first, then trains on it
        retrain(params_file=params_file, workspace=workspace, trigger="drift")
    flush_our_logs()
    return result
