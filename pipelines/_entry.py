"""What every stage entry point shares: workspace, params, logging, and errors.

A stage failure prints one clear line (not a traceback) and exits non-zero, so
``dvc repro`` stops at the failed stage and later stages never run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from components.core.config import ParamsError, load_params
from components.core.paths import Workspace, configure_environment
from components.core.settings import settings
from components.core.stages import FOLLOWS, stage_function
from components.core.workspace_lock import workspace_lock

# Errors that are the user's to fix (bad data, bad params, a stage run out of order).
EXPECTED_ERRORS = (ParamsError, FileNotFoundError, RuntimeError, ValueError)


def entry_point(name: str) -> Callable[[], object]:
    """The ``main`` of a stage's module."""
    return lambda: run_stage(name)


def run_stage(name: str, stage=None, ws: Workspace | None = None) -> object:
    """Run one stage (by default the named one), then the steps that follow it
    (``FOLLOWS``), on the workspace; exit 1 if one fails."""
    from components.core.logs import setup_logging

    ws = ws or Workspace.current()
    configure_environment(ws)
    setup_logging(settings().verbose)
    start = time.perf_counter()
    print(f"[{name}] starting", flush=True)
    try:
        with workspace_lock(ws, f"the {name} stage"):  # WorkspaceBusy is a RuntimeError
            params = load_params(ws.params)
            result = (stage or stage_function(name))(params, ws)
            for step in FOLLOWS.get(name, ()):
                print(f"[{step}] {stage_function(step)(params, ws).summary()}", flush=True)
    except EXPECTED_ERRORS as err:
        print(f"[{name}] FAILED: {err}", file=sys.stderr, flush=True)
        sys.exit(1)
    took = time.perf_counter() - start
    print(f"[{name}] done in {took:.1f}s: {result.summary()}", flush=True)
    return result
