"""The deployments ``mloop deploy`` makes: ``retrain`` on a cron, ``monitor`` on an interval.

Two ways to run them, one list of them (``schedules``):

* served (the default): this process polls the Prefect server and runs the
  flows itself (``prefect.serve``);
* through a work pool (``mloop deploy --pool NAME``, or ``MLOOP_WORK_POOL``): the
  deployments are registered with the server and any ``prefect worker start
  --pool NAME`` runs them, on this machine or another that sees the same code
  and workspace. ``prefect.yaml`` at the repository root declares the same two
  for ``prefect deploy --all`` (a test keeps them equal).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from components.core.config import Params
from components.core.paths import Workspace

REPO = Path(__file__).resolve().parent.parent
POOL_TYPE = "process"


@dataclass(frozen=True)
class Schedule:
    """One deployment: which flow, under what name, how often."""

    flow: str
    name: str
    entrypoint: str  # relative to the repository root, as prefect.yaml writes it
    description: str
    cron: str | None = None
    interval: timedelta | None = None
    parameters: tuple[tuple[str, str], ...] = ()  # besides the params file and the workspace

    @property
    def full_name(self) -> str:
        return f"{self.flow}/{self.name}"


def schedules(params: Params) -> list[Schedule]:
    return [
        Schedule(
            "retrain", "scheduled", "flows/retrain.py:retrain",
            "the whole loop on a schedule, when new data arrived", cron=params.monitor.retrain_cron,
            parameters=(("trigger", "schedule"),),
        ),
        Schedule(
            "monitor", "drift-check", "flows/monitor.py:monitor",
            "drift on the inference log; drift starts retrain",
            interval=timedelta(minutes=params.monitor.interval_minutes),
        ),
    ]  # fmt: skip


def _flow(schedule: Schedule):
    from flows.monitor import monitor
    from flows.retrain import retrain

    return {"retrain": retrain, "monitor": monitor}[schedule.flow]


def _arguments(params_file: Path, ws: Workspace, schedule: Schedule) -> dict:
    return {"params_file": str(Path(params_file).resolve()), "workspace": str(ws.root),
            **dict(schedule.parameters)}  # fmt: skip


def served(params: Params, params_file: Path, ws: Workspace) -> list:
    """Deployments for ``prefect.serve``: this process runs them."""
    return [
        _flow(s).to_deployment(
            name=s.name, cron=s.cron, interval=s.interval,
            parameters=_arguments(params_file, ws, s), description=s.description,
        )
        for s in schedules(params)
    ]  # fmt: skip


def ensure_pool(pool: str) -> bool:
    """Create a process work pool called ``pool`` unless the server has one; True if created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
            return False
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type=POOL_TYPE))
            return True


def to_pool(params: Params, params_file: Path, ws: Workspace, pool: str) -> list[str]:
    """Register the deployments on ``pool``; a worker of that pool runs them from ``REPO``.

    The code is not copied anywhere: the worker's flow run starts in ``REPO``
    (a ``set_working_directory`` pull step), so the worker must see this
    checkout and the workspace at the same paths (one machine, or a shared
    volume as in ``infra/``).
    """
    from prefect import flow

    names = []
    for s in schedules(params):
        deployable = flow.from_source(source=str(REPO), entrypoint=s.entrypoint)
        deployable.deploy(
            name=s.name, work_pool_name=pool, cron=s.cron, interval=s.interval,
            parameters=_arguments(params_file, ws, s), description=s.description,
            build=False, push=False, print_next_steps=False,
        )  # fmt: skip
        names.append(s.full_name)
    return names


def serve(deployments: list, grace_s: float = 60) -> bool:
    """Run ``deployments`` here until SIGINT or SIGTERM; True if the runner stopped in time.

    ``prefect.serve`` leaves Ctrl-C to asyncio, which on busy machines now and then
    lost it while the runner was starting a flow run, and went on serving. Here
    the runner polls in a thread of its own and the main thread only waits for a
    signal; then it asks the runner to stop (flow runs in flight are cancelled)
    and gives it ``grace_s`` seconds. A second signal stops waiting at once.
    """
    import asyncio
    import signal
    import threading

    from prefect.runner import Runner

    runner = Runner(pause_on_shutdown=True)
    for deployment in deployments:
        runner.add_deployment(deployment)
    loop = asyncio.new_event_loop()
    failure: list[BaseException] = []

    def poll() -> None:
        try:
            loop.run_until_complete(runner.start())
        except BaseException as err:  # handed to the main thread, which raises it
            failure.append(err)

    signals: list[int] = []
    previous = {sig: signal.signal(sig, lambda sig, _: signals.append(sig))
                for sig in (signal.SIGINT, signal.SIGTERM)}  # fmt: skip
    thread = threading.Thread(target=poll, name="mloop-runner", daemon=True)
    thread.start()
    try:
        while not signals and thread.is_alive():
            thread.join(0.5)
        if not signals:  # the runner ended by itself
            if failure and not isinstance(failure[0], asyncio.CancelledError):
                raise failure[0]
            return True
        name = signal.Signals(signals[0]).name
        print(f"mloop: {name}: stopping the runner and cancelling flow runs in flight"
              f" (up to {grace_s:.0f} s; again to exit now)", flush=True)  # fmt: skip

        async def stop() -> None:
            try:
                if runner.started:
                    await asyncio.wait_for(runner.astop(), grace_s)
            finally:  # whatever the runner left running, or everything if it never started
                for task in asyncio.all_tasks():
                    if task is not asyncio.current_task():
                        task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), loop)
        deadline = time.monotonic() + grace_s
        while len(signals) < 2 and thread.is_alive() and time.monotonic() < deadline:
            thread.join(0.5)
        return not thread.is_alive()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
