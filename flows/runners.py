"""Where a flow's tasks run: inline, or fanned out over a Dask cluster (prefect-dask).

``parallel`` > 1 starts a local cluster of that many single-threaded worker
processes for the flow run; ``MLOOP_DASK_ADDRESS`` (``tcp://scheduler:8786``)
names a running cluster instead (``dask scheduler`` and ``dask worker`` on other
machines, which must see the workspace at the same path).
"""

from __future__ import annotations

from prefect.task_runners import ThreadPoolTaskRunner

from components.core.settings import settings


def task_runner(parallel: int):
    """Dask for ``parallel`` > 1 (or a cluster named by ``MLOOP_DASK_ADDRESS``), else inline."""
    address = settings().dask_address
    if parallel == 1 and not address:
        return ThreadPoolTaskRunner(max_workers=1)
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": parallel, "threads_per_worker": 1, "processes": True,
                        "dashboard_address": None},
    )  # fmt: skip
