"""Our loggers into the flow run's log (Prefect's UI), wherever the flow runs.

``PREFECT_LOGGING_EXTRA_LOGGERS`` does this only when set before Prefect is first
imported; a flow run in a worker's process, or in the tests, starts later. So each
flow attaches Prefect's API handler to ``components`` and ``flows`` itself, once.
"""

from __future__ import annotations

import logging

from prefect.logging.handlers import APILogHandler

from components.core.logs import OUR_LOGGERS


def send_our_logs_to_prefect() -> None:
    for name in OUR_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, APILogHandler) for h in logger.handlers):
            logger.addHandler(APILogHandler())


def flush_our_logs() -> None:
    """Send what our loggers queued for the run's log now, before the flow returns.

    The API handler sends in batches every few seconds; lines of a flow's last
    seconds were otherwise still queued when a process with Prefect's temporary
    server exited, and were lost with it ("Error logging to API").
    """
    for name in OUR_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, APILogHandler):
                handler.flush()
                return  # one worker sends every logger's lines
