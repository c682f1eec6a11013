"""One place for logging set-up, called by each entry point (never at import).

The libraries of the loop are chatty: Lightning announces hardware and tips,
MLflow its database migrations, Great Expectations draws progress bars. A user
cannot act on those, so they are kept to warnings; our own stage lines stay.
"""

from __future__ import annotations

import logging
import sys
import warnings

OUR_LOGGERS = ("components", "flows", "pipelines")  # one logger per module, under these
_QUIET_LOGGERS = (
    "lightning",
    "lightning.pytorch",
    "lightning.fabric",
    "pytorch_lightning",
    "mlflow",
    "alembic",
    "great_expectations",
    "great_expectations.data_context.types.base",
    "evidently",
    "bentoml",
    "prefect",
    "urllib3",
    "httpx",
    "numexpr",
)

# Warnings raised inside the libraries that a user of mloop cannot act on.
_IGNORED_WARNINGS = (
    r".*does not have many workers.*",
    r".*number of training batches.*log_every_n_steps.*",
    r".*treespec.*",
    r".*Precision.*is not supported by the model summary.*",
    r".*pkg_resources is deprecated.*",
    r".*Pydantic serializer warnings.*",
    r".*`torch.ao.quantization` is deprecated.*",
    r".*torch.ao.quantization.*",
    r".*Sparse CSR tensor support is in beta.*",
    r".*An input example was not provided.*",
    r".*quantized tensor creation functions.*deprecated.*",
    r".*reduce_range will be deprecated.*",
    r".*ONNX model declares execution providers.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*Any type hint is inferred as AnyType.*",
)


_verbose = False  # set by setup_logging from MLOOP_VERBOSE (components.core.settings)


def quiet_libraries() -> None:
    """Keep the libraries' loggers at WARNING.

    Lightning and MLflow set their loggers to INFO when first imported, so the
    modules that import them lazily call this again right after.
    """
    if _verbose:
        return
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def setup_logging(verbose: bool = False) -> None:
    """At an entry point: our lines at INFO, the libraries at WARNING unless ``verbose``.

    Takes ``verbose`` rather than reading MLOOP_VERBOSE, so the training loop that
    calls ``quiet_libraries`` needs no settings (no pydantic on a bare GPU machine).
    """
    global _verbose
    _verbose = verbose
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    for ours in OUR_LOGGERS:  # INFO even where a library set the root logger higher
        logging.getLogger(ours).setLevel(logging.INFO)
    if verbose:
        return
    quiet_libraries()
    for pattern in _IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")  # the orchestrator's run records


class _NoRunFailures(logging.Filter):
    """Drops a flow or task run's failure records (tracebacks of our own stage errors)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith(RUN_LOGGERS) and record.levelno >= logging.ERROR)


def hide_run_failures_on_console() -> None:
    """Keep the orchestrator's failure tracebacks off the terminal (not off its UI: its API
    handler still records them): the command says what failed in one line, and
    ``--verbose`` shows the traceback. Call once the orchestrator has set up its logging;
    its API handler is told apart by class name, so nothing here imports it."""
    for handler in logging.getLogger().handlers:  # ours and the orchestrator's console
        if "API" not in type(handler).__name__:
            handler.addFilter(_NoRunFailures())
