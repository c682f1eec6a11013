"""One run at a time per workspace: the lock that ``mloop run``, ``dvc repro`` and ``train`` hold.

Two runs writing one workspace at once would mix their ``models/``, ``reports/`` and
``bento.json`` (whoever wrote last wins) and race to create the MLflow store. The
second run is refused at once with who holds the lock. The lock is a file lock
(``.mloop/run.lock``), released by the operating system when its holder dies.
Within one process it is re-entrant: the CLI takes it, and the flow it runs
takes it again. Runs in two workspaces sharing one registry are not affected
(the registry has its own lock for gate decisions).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from filelock import FileLock, Timeout

from components.core.paths import Workspace


class WorkspaceBusy(RuntimeError):
    pass


_held: dict[str, tuple[FileLock, int]] = {}  # lock path -> (lock, depth) in this process
_guard = threading.Lock()


@contextmanager
def workspace_lock(ws: Workspace, what: str) -> Iterator[None]:
    """Hold the workspace for ``what``; raise ``WorkspaceBusy`` naming the holder if taken.

    Only rank zero of a multi-process run holds it: the other ranks (Lightning's DDP
    launcher starts the same command again, torchrun starts it N times) are the same run.
    """
    if not _rank_zero():
        yield
        return
    ws.state.mkdir(parents=True, exist_ok=True)
    path = str(ws.run_lock)
    holder = ws.run_lock_holder
    with _guard:
        lock, depth = _held.get(path, (None, 0))
        if lock is None:
            lock = FileLock(path, timeout=0)
            try:
                lock.acquire()
            except Timeout:
                raise WorkspaceBusy(_busy_message(ws, holder)) from None
            holder.write_text(json.dumps({"what": what, "pid": os.getpid(), "since": time.time()}))
        _held[path] = (lock, depth + 1)
    try:
        yield
    finally:
        with _guard:
            lock, depth = _held[path]
            if depth == 1:
                del _held[path]
                holder.unlink(missing_ok=True)
                lock.release()
            else:
                _held[path] = (lock, depth - 1)


def _rank_zero() -> bool:
    return all(os.environ.get(key, "0") in ("", "0") for key in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def _busy_message(ws: Workspace, holder) -> str:
    try:
        info = json.loads(holder.read_text())
        since = time.strftime("%H:%M:%S", time.localtime(info["since"]))
        who = f"{info['what']} (pid {info['pid']}, since {since})"
    except (OSError, ValueError, KeyError):
        who = "another run"
    return f"workspace {ws.root} is busy: {who} holds it; wait for it to finish, or use another"
