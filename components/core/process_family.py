"""Process families: every process we start, and all it starts, stops with its parent.

BentoML runs its server and each worker in a process group of its own, and
Prefect starts its temporary server as a subprocess, so signalling one process
group does not reach them all, and a parent killed with SIGKILL leaves them
behind. A family is instead marked in the environment, which every descendant
inherits: ``MLOOP_PROCESS_FAMILY`` holds a list of family tokens, and
``members(token)`` finds the live processes carrying a token by reading
``/proc/PID/environ``. ``terminate(token)`` stops them all (SIGTERM, then
SIGKILL), and ``guard()`` starts a small watchdog that does so as soon as this
process is gone, however it went.

Linux only (``/proc``); elsewhere ``members`` finds nothing and the process
groups alone are signalled. Light at import: ``mloop serve`` and the tests use it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import NamedTuple

ENV = "MLOOP_PROCESS_FAMILY"
_KEY = ENV.encode() + b"="


def new_token() -> str:
    return uuid.uuid4().hex[:16]


def with_token(env: dict[str, str], token: str) -> dict[str, str]:
    """``env`` with ``token`` added to its family list (it keeps its older families)."""
    tokens = [t for t in env.get(ENV, "").split(":") if t]
    return {**env, ENV: ":".join([*tokens, token])}


def tokens_of(pid: int) -> list[str]:
    """The family tokens a live process carries (none for a zombie or another user's)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return []
    for entry in environ.split(b"\0"):
        if entry.startswith(_KEY):
            return entry[len(_KEY) :].decode(errors="replace").split(":")
    return []


def members(token: str) -> list[int]:
    """Live processes of family ``token``, other than this one."""
    try:
        pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    except OSError:
        return []
    return [pid for pid in pids if pid != os.getpid() and token in tokens_of(pid)]


def rss_mb(token: str) -> float:
    """Resident memory of family ``token``'s live processes together, in MB."""
    total = 0
    for pid in members(token):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def describe(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return f"{pid} (gone)"
    return f"{pid} {command.decode(errors='replace').strip()[:200]}"


def terminate(token: str, timeout_s: float = 15.0) -> list[int]:
    """SIGTERM every member of ``token``; SIGKILL those left after ``timeout_s``.

    Returns the pids that were alive when asked.
    """
    found = members(token)
    _signal_all(found, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    left = found
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = members(token)
    _signal_all(left, signal.SIGKILL)
    return found


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def guard() -> str:
    """Put this process and its future children in a family, watched by a guard process.

    The guard polls for this process's end (by any signal, SIGKILL too) and then
    terminates the family. Call it once, early, in a process that starts servers.
    Returns the family's token.
    """
    token = new_token()
    os.environ.update(with_token(dict(os.environ), token))
    # The guard itself must not carry the token it enforces: it is no member.
    env = {k: v for k, v in os.environ.items() if k != ENV}
    subprocess.Popen(
        [sys.executable, "-m", "components.core.process_family", str(os.getpid()), token],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, cwd=str(Path(__file__).resolve().parents[2]),
    )  # fmt: skip
    return token


def _watch(parent: int, token: str) -> None:
    """The guard's loop: wait for ``parent`` to end, then stop the family."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C to the terminal is the parent's
    born = stat(parent)
    while born is not None:
        now = stat(parent)
        if now is None or now.started != born.started or now.state == "Z":  # gone, reused
            break
        time.sleep(0.5)
    terminate(token)


class Stat(NamedTuple):
    state: str  # "R", "S", ..., "Z" for a zombie
    parent: int
    started: str  # clock ticks after boot: with the pid, names one process
    cpu_ticks: int  # user and system CPU time so far, in clock ticks


def stat(pid: int) -> Stat | None:
    """A process's state, parent, start time and CPU time (``/proc/PID/stat``); None when
    it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return Stat(fields[0], int(fields[1]), fields[19], int(fields[11]) + int(fields[12]))
    except (OSError, IndexError, ValueError):
        return None


if __name__ == "__main__":
    _watch(int(sys.argv[1]), sys.argv[2])
