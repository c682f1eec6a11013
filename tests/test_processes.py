"""Process families and server logs: what ``mloop serve`` and the tests rely on to stop servers."""

from __future__ import annotations

import os
import signal
import sys
import time

from components.core import process_family
from components.serve import supervisor

# A parent that starts a child in a session (process group) of its own, as BentoML
# starts its workers, then prints a line a second.
TREE = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'],"
    " start_new_session=True)\n"
    "for i in range(300):\n"
    "    print('line', i, 'x' * 200, flush=True); time.sleep(0.01)\n"
)


def _alive(token: str) -> list[int]:
    return process_family.members(token)


def test_stop_ends_children_in_process_groups_of_their_own(tmp_path):
    server = supervisor.start_process([sys.executable, "-c", TREE], tmp_path / "out.log")
    deadline = time.monotonic() + 30
    while len(_alive(server.family)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_alive(server.family)) == 2  # the parent and its detached child
    supervisor.stop(server)
    assert _alive(server.family) == []


def test_the_guard_ends_the_family_when_its_owner_is_killed(tmp_path):
    """A process that called ``guard()`` is SIGKILLed: its children go too."""
    owner_code = (
        "import subprocess, sys, time\n"
        "from components.core import process_family\n"
        "process_family.guard()\n"
        f"subprocess.Popen([sys.executable, '-c', {TREE!r}], start_new_session=True)\n"
        "print('started', flush=True); time.sleep(300)\n"
    )
    owner = supervisor.start_process([sys.executable, "-c", owner_code], tmp_path / "owner.log")
    deadline = time.monotonic() + 30
    while len(_alive(owner.family)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_alive(owner.family)) == 3  # owner, its child and grandchild (no guard)
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait(timeout=10)
    deadline = time.monotonic() + 20
    while _alive(owner.family) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _alive(owner.family) == []


def test_server_logs_rotate(tmp_path, monkeypatch):
    monkeypatch.setattr(supervisor, "LOG_MAX_BYTES", 10_000)
    log = tmp_path / "serve.log"
    server = supervisor.start_process([sys.executable, "-c", TREE], log)
    try:
        server.wait(timeout=60)
    finally:
        supervisor.stop(server)
    deadline = time.monotonic() + 10
    while not log.with_name("serve.log.3").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["serve.log", "serve.log.1", "serve.log.2", "serve.log.3"], files
    assert all(p.stat().st_size <= 10_000 for p in tmp_path.iterdir())
    assert "line 299 " in log.read_text()  # the newest lines are in the current file


def test_a_busy_port_is_refused_before_anything_starts():
    import socket

    import pytest

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(supervisor.PortInUse, match="already in use"):
            supervisor.start("any:tag", "127.0.0.1", port)
