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
