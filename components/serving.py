"""Running the Bento: start ``bentoml serve`` on loopback, wait for it, and follow new Bentos.

``Supervisor`` is what ``mloop serve`` runs: it serves the Bento the package stage
last built (``reports/bento.json``) and, when a later run packages another model
version (a promotion), stops the old server and starts the new one on the same
port, so the served model follows the champion without anyone restarting it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from components.records import read_json


def start_process(
    command: list[str], log_file: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """A server process in its own process group (so ``stop`` ends its workers too).

    ``env`` replaces this process's environment for it when given.
    """
    with open(log_file or os.devnull, "ab") as out:  # the child keeps its own handle
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env or os.environ.copy(),
            start_new_session=True,
        )  # fmt: skip


def start(tag: str, host: str, port: int, log_file: Path | None = None) -> subprocess.Popen:
    """``bentoml serve TAG`` on ``host:port``."""
    command = [sys.executable, "-m", "bentoml", "serve", tag, "--host", host, "--port", str(port)]
    return start_process(command, log_file)


def wait_http(url: str, server: subprocess.Popen, timeout_s: float = 180, log_file=None) -> None:
    """Block until ``url`` answers 200; raise if the server exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = Path(log_file).read_text()[-3000:] if log_file else ""
            raise RuntimeError(f"the server exited with {server.returncode}\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    stop(server)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")


def wait_ready(
    host: str, port: int, server: subprocess.Popen, timeout_s: float = 180, log_file=None
) -> None:
    """Block until the Bento's /readyz answers 200."""
    wait_http(f"http://{host}:{port}/readyz", server, timeout_s, log_file)


def stop(server: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
    """Signal the server's process group and wait for it; SIGKILL if it does not stop."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, sig)
    try:
        return server.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        return server.wait()


class Supervisor:
    """Serve the packaged Bento; restart on the next one when the served model changes."""

    def __init__(
        self,
        record: Path,
        host: str,
        port: int,
        log_file: Path | None = None,
        say: Callable[[str], None] = print,
    ) -> None:
        self.record, self.host, self.port = record, host, port
        self.log_file, self.say = log_file, say
        self.server: subprocess.Popen | None = None
        self.serving: dict | None = None

    def packaged(self) -> dict:
        return read_json(self.record, "package")

    def launch(self, bento: dict) -> None:
        self.say(
            f"serving {bento['bento_tag']}: {bento['model_name']} version"
            f" {bento['model_version']} ({bento['alias']}) on http://{self.host}:{self.port}"
        )
        self.server = start(bento["bento_tag"], self.host, self.port, self.log_file)
        wait_ready(self.host, self.port, self.server, log_file=self.log_file)
        self.serving = bento
        self.say("ready")

    def poll(self) -> None:
        """Restart on the packaged Bento if it serves another model than the running one."""
        try:
            bento = self.packaged()
        except (FileNotFoundError, ValueError):
            return  # a package stage is writing it: look again next time
        if bento["model_tag"] != self.serving["model_tag"]:
            self.say(f"new model packaged (version {bento['model_version']}): restarting")
            stop(self.server)
            self.launch(bento)

    def run(self, interval_s: float = 5.0) -> int:
        self.launch(self.packaged())
        try:
            while self.server.poll() is None:
                time.sleep(interval_s)
                self.poll()
            return self.server.returncode
        finally:
            if self.server is not None and self.server.poll() is None:
                stop(self.server)
