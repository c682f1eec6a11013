"""What every command opens with: the workspace, its params and logging (the root's options).

``--workspace``, ``--params`` and ``--verbose`` are the root's: they may stand before the
command or after it (``mloop --workspace W run`` and ``mloop run --workspace W``); the one
after wins. The workspace's environment (MLflow, BentoML, Prefect) is set on first use, so
``--help`` configures nothing.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from components.core.config import ParamsError, load_params
from components.core.paths import Workspace, configure_environment


@dataclass
class Session:
    workspace: str | None = None
    params_file: str | None = None
    verbose: bool = False
    _ws: Workspace | None = field(default=None, repr=False)

    def merge(self, workspace: str | None, params_file: str | None, verbose: bool) -> None:
        """A command's own global options, given after it, over the root's."""
        self.workspace = workspace or self.workspace
        self.params_file = params_file or self.params_file
        self.verbose = verbose or self.verbose
        if self.verbose:  # every logging set-up reads it (settings().verbose)
            os.environ["MLOOP_VERBOSE"] = "1"

    @property
    def ws(self) -> Workspace:
        if self._ws is None:
            root = Path(self.workspace).resolve() if self.workspace else None
            self._ws = Workspace(root) if root else Workspace.current()
            configure_environment(self._ws)
        return self._ws

    @property
    def params_path(self) -> Path:
        return Path(self.params_file).resolve() if self.params_file else self.ws.params

    def params(self):
        """The validated params, or exit 2 with every wrong key named."""
        try:
            return load_params(self.params_path)
        except ParamsError as err:
            print(f"mloop: {err}", file=sys.stderr)
            sys.exit(2)

    def logged(self) -> Session:
        """Logging set up (libraries kept to warnings unless --verbose); the session itself."""
        from components.core.logs import setup_logging

        setup_logging(self.verbose)
        return self


def one_line(err: BaseException | str, limit: int = 500) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
