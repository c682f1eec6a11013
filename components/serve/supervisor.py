"""Running the Bento: start ``bentoml serve`` on loopback, wait for it, and follow new Bentos.

``Supervisor`` is what ``mloop serve`` runs: it serves the Bento the package stage
last built (``reports/bento.json``) and, when a later run packages another model
version (a gate decision, promote, rollback), names it in the model pointer: every
worker loads it beside the one serving and swaps it in (``package/served_model.py``),
so the served model follows the champion with no request refused or reset and none
answered by a half-loaded model. Only when the workers cannot load it does it fall
back to a restart of the server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from components.core import process_family
from components.core.records import read_json

LOG_MAX_BYTES = 10 * 2**20  # a server log rotates past this size...
LOG_BACKUPS = 3  # ...keeping this many older files (serve.log.1 ... .3)
# What a Bento worker writes when its start fails (then BentoML restarts it, forever).
STARTUP_FAILED = ("Application startup failed", "Error while loading the service")


class PortInUse(RuntimeError):
    pass


def check_port_free(host: str, port: int) -> None:
    """Raise ``PortInUse`` if something already listens on ``host:port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        try:
            probe.bind((host, port))
        except OSError as err:
            raise PortInUse(
                f"{host}:{port} is already in use ({err.strerror}): stop what listens there,"
                " or pick another --port"
            ) from None


def start_process(
    command: list[str], log_file: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """A server process in its own process group and process family.

    ``stop`` ends the family: the process, its workers (in groups of their own) and
    whatever they started. Its output goes to ``log_file``, rotated past
    ``LOG_MAX_BYTES``. ``env`` replaces this process's environment for it when given.
    """
    token = process_family.new_token()
    env = process_family.with_token(env or os.environ.copy(), token)
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=env, start_new_session=True,
    )  # fmt: skip
    server.family = token
    threading.Thread(
        target=_pump, args=(server.stdout, log_file), daemon=True, name=f"log-{server.pid}"
    ).start()
    return server


def _pump(stream, log_file: Path | None) -> None:
    """Copy a server's output into ``log_file``, rotating it; drop it without one."""
    out, size = None, 0
    try:
        if log_file is not None:
            log_file = Path(log_file)
            log_file.parent.mkdir(parents=True, exist_ok=True)
            out = open(log_file, "ab")  # noqa: SIM115 (rotated below)
            size = out.tell()
        for line in iter(stream.readline, b""):
            if out is None:
                continue
            if size + len(line) > LOG_MAX_BYTES:
                out.close()
                _rotate(log_file)
                out, size = open(log_file, "ab"), 0  # noqa: SIM115
            out.write(line)
            out.flush()
            size += len(line)
    except (OSError, ValueError):  # the disk is full or the pipe closed: keep the server going
        for _ in iter(stream.readline, b""):
            pass
    finally:
        if out is not None:
            out.close()


def _rotate(log_file: Path) -> None:
    for n in range(LOG_BACKUPS - 1, 0, -1):
        older = log_file.with_name(f"{log_file.name}.{n}")
        if older.exists():
            older.replace(log_file.with_name(f"{log_file.name}.{n + 1}"))
    log_file.replace(log_file.with_name(f"{log_file.name}.1"))


def start(
    tag: str, host: str, port: int, log_file: Path | None = None, pointer: Path | None = None
) -> subprocess.Popen:
    """``bentoml serve TAG`` on ``host:port``; refuses a port something else listens on.
    With ``pointer``, its workers serve the model the pointer names, and follow it."""
    check_port_free(host, port)
    command = [sys.executable, "-m", "bentoml", "serve", tag, "--host", host, "--port", str(port)]
    env = os.environ.copy()
    if pointer is not None:
        env["MLOOP_MODEL_POINTER"] = str(pointer)
    return start_process(command, log_file, env)


def wait_http(url: str, server: subprocess.Popen, timeout_s: float = 180, log_file=None) -> None:
    """Block until ``url`` answers 200; raise if the server exits, fails to start its
    workers (the error from its log), or the time runs out."""
    deadline = time.monotonic() + timeout_s
    seen = Path(log_file).stat().st_size if log_file and Path(log_file).is_file() else 0
    while time.monotonic() < deadline:
        if server.poll() is not None:
            stop(server)  # its workers may outlive it
            raise RuntimeError(f"the server exited with {server.returncode}\n{_tail(log_file)}")
        failure = _startup_failure(log_file, seen)
        if failure:
            stop(server)
            raise RuntimeError(f"the server could not start:\n{failure}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    stop(server)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s\n{_tail(log_file)}")


def _tail(log_file, chars: int = 3000) -> str:
    if not log_file or not Path(log_file).is_file():
        return ""
    return Path(log_file).read_text(errors="replace")[-chars:]


def _startup_failure(log_file, offset: int) -> str | None:
    """The lines around a worker's start-up error written after ``offset``, if any."""
    if not log_file or not Path(log_file).is_file():
        return None
    with open(log_file, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if any(marker in line for marker in STARTUP_FAILED):
            return "\n".join(lines[max(0, i - 12) : i + 1])
    return None


def wait_ready(
    host: str, port: int, server: subprocess.Popen, timeout_s: float = 180, log_file=None
) -> None:
    """Block until the Bento's /readyz answers 200."""
    wait_http(f"http://{host}:{port}/readyz", server, timeout_s, log_file)


def stop(server: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
    """Stop a server started here and every process of its family; SIGKILL what lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, sig)
    try:
        code = server.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        code = server.wait()
    family = getattr(server, "family", None)
    if family:  # workers in process groups of their own, orphaned or not
        process_family.terminate(family, timeout_s=10)
    return code


@contextlib.contextmanager
def stop_signals_raise():
    """Turn SIGTERM (and SIGHUP) into ``KeyboardInterrupt`` while serving, as Ctrl-C is:
    the ``finally`` blocks that stop the servers then run."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Supervisor:
    """Serve the packaged Bento; swap its workers onto the next model when it changes."""

    def __init__(
        self,
        record: Path,
        host: str,
        port: int,
        log_file: Path | None = None,
        say: Callable[[str], None] = print,
        pointer: Path | None = None,
        swap_timeout_s: float = 120,
    ) -> None:
        self.record, self.host, self.port = record, host, port
        self.log_file, self.say = log_file, say
        self.pointer = pointer or Path(record).parent / ".served_model.json"
        self.swap_timeout_s = swap_timeout_s
        self.server: subprocess.Popen | None = None
        self.serving: dict | None = None

    def packaged(self) -> dict:
        return read_json(self.record, "package")

    def launch(self, bento: dict) -> None:
        check_port_free(self.host, self.port)
        self.say(
            f"serving {bento['bento_tag']}: {bento['model_name']} version"
            f" {bento['model_version']} ({bento['alias']}) on http://{self.host}:{self.port}"
        )
        self.server = None
        from components.package.served_model import ack_folder, write_pointer

        shutil.rmtree(ack_folder(self.pointer), ignore_errors=True)  # an earlier server's
        write_pointer(self.pointer, bento["model_tag"])
        self.server = start(bento["bento_tag"], self.host, self.port, self.log_file, self.pointer)
        wait_ready(self.host, self.port, self.server, log_file=self.log_file)
        self.serving = bento
        self.say("ready")

    def swap(self, bento: dict) -> bool:
        """Name ``bento``'s model in the pointer and wait until every worker serves it;
        False (the pointer set back) if one cannot load it or they do not say in time."""
        from components.core.settings import settings
        from components.package.served_model import acknowledged, write_pointer

        tag, workers = bento["model_tag"], settings().service_workers
        write_pointer(self.pointer, tag)
        deadline = time.monotonic() + self.swap_timeout_s
        while time.monotonic() < deadline and self.server.poll() is None:
            said = acknowledged(self.pointer).values()
            failed = [s["error"] for s in said if s.get("error")]
            if failed:
                self.say(f"a worker cannot load version {bento['model_version']}: {failed[0]}")
                break
            if len(said) >= workers and all(s["model_tag"] == tag for s in said):
                return True
            time.sleep(0.2)
        write_pointer(self.pointer, self.serving["model_tag"])
        return False

    def poll(self) -> None:
        """Follow the packaged Bento: swap the workers onto its model if it is another one
        than they serve (a restart of the server only if they cannot)."""
        try:
            bento = self.packaged()
        except (FileNotFoundError, ValueError):
            return  # a package stage is writing it: look again next time
        if bento["model_tag"] != self.serving["model_tag"]:
            version, start = bento["model_version"], time.perf_counter()
            self.say(f"new model packaged (version {version}): loading it in the workers")
            if self.swap(bento):
                self.serving = bento
                self.say(
                    f"serving {bento['model_name']} version {version} ({bento['alias']}):"
                    f" every worker swapped in {time.perf_counter() - start:.1f} s"
                )
                return
            self.say("the workers did not take the new model: restarting the server")
            stop(self.server)
            self.launch(bento)

    def run(self, interval_s: float = 0.25) -> int:
        """Serve until the server exits (its exit code) or a signal stops ``mloop serve``."""
        try:
            self.launch(self.packaged())
            while self.server.poll() is None:
                time.sleep(interval_s)
                self.poll()
            self.say(f"the server exited with {self.server.returncode}")
            return self.server.returncode or 1
        finally:
            if self.server is not None:
                stop(self.server)  # its workers too, even when the server itself is gone
