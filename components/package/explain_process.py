"""Explanations in a process of their own, beside each server worker.

An explanation is tens to hundreds of predictions' worth of Python and torch (Integrated
Gradients, SHAP). In a thread of the worker it shared the interpreter's lock and the
cores with the predictions of the same event loop; here it runs in a child process at a
lower CPU priority (``nice``), so the kernel runs a prediction first whenever both want a
core, and no lock is shared. The worker sends each job over a pipe (the explainer's
recipe, a ``ServedExplainer``, and the inputs) and waits in a thread; the child makes
each model's explainer once (the two newest are kept: a swap brings its own) and answers
the attributions with the CPU-seconds they took, which the worker's budget
(``package/budget.py``) learns from.

The child ends with its worker: on the worker's exit (the pipe closes: EOF), and on its
death by any signal (Linux's parent-death signal). A child that dies is started again
for the next job; the job it held answers 503.

    python -m components.package.explain_process READ_FD WRITE_FD THREADS NICE
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from multiprocessing.connection import Connection
from pathlib import Path

KEPT = 2  # explainers kept made in the child: the one serving and the one before a swap


class ExplainUnavailable(RuntimeError):
    """The explanation process died or could not start (the job answers 503)."""


class ExplainFailed(RuntimeError):
    """The explainer could not explain (what it lacks, said: the job answers 409)."""


class ExplainProcess:
    """The worker's side: one child, one job at a time (callers wait in a thread)."""

    def __init__(self, threads: int = 1, nice: int = 10) -> None:
        self.threads, self.nice = threads, nice
        self._child: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def _start(self) -> None:
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        root = Path(__file__).resolve().parents[2]  # the folder that holds components/
        self._child = subprocess.Popen(
            [sys.executable, "-m", "components.package.explain_process", str(to_child),
             str(from_child), str(self.threads), str(self.nice)],
            pass_fds=(to_child, from_child), cwd=root, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_child)
        os.close(from_child)
        self._conn = _Duplex(Connection(to_parent, writable=False),
                             Connection(from_parent, readable=False))  # fmt: skip

    def call(self, job: tuple) -> tuple:
        """Send ``job`` and wait for its answer: (result, CPU-seconds it took)."""
        with self._lock:
            if self._child is None or self._child.poll() is not None:
                self._start()
            try:
                self._conn.send(job)
                status, result, seconds = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError) as err:
                self._stop_child()
                why = f"the explanation process ended ({err or 'EOF'}): started again next time"
                raise ExplainUnavailable(why) from None
        if status != "ok":
            raise ExplainFailed(result)
        return result, seconds

    def _stop_child(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._child is not None:
            with contextlib.suppress(ProcessLookupError):
                self._child.kill()
            self._child.wait(timeout=10)
            self._child = None

    def close(self) -> None:
        with self._lock:
            self._stop_child()


class _Duplex:
    """A reading and a writing ``Connection`` as one."""

    def __init__(self, reader: Connection, writer: Connection) -> None:
        self.reader, self.writer = reader, writer

    def send(self, obj) -> None:
        self.writer.send(obj)

    def recv(self):
        return self.reader.recv()

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


# ---------------------------------------------------------------- the child


def _die_with_parent() -> None:
    """SIGKILL this process when its parent dies (Linux ``prctl``), whatever kills it."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the signal was asked for
        os._exit(0)


def run(job: tuple, made: OrderedDict) -> tuple:
    """One job: ("warm", explainer) makes it; ("explain", explainer, inputs, targets, rows)
    answers (method, attributions, completeness). Returns the answer and the CPU-seconds
    the explanation itself took (making the explainer, once, is not its cost)."""
    what, explainer, *args = job
    key = explainer.key
    if key not in made:
        made[key] = explainer
        while len(made) > KEPT:
            made.popitem(last=False)
    made.move_to_end(key)
    made_now = made[key].get()
    if what == "warm":
        return made_now.method, 0.0
    inputs, targets, rows = args
    start = time.process_time()
    found = made_now.explain(inputs, targets, rows=rows)
    return (made_now.method, *found), time.process_time() - start


def main(argv: list[str]) -> int:
    read_fd, write_fd, threads, nice = (int(a) for a in argv)
    _die_with_parent()
    with contextlib.suppress(OSError):
        os.nice(nice)  # the kernel runs the worker's predictions first
    os.environ["OMP_NUM_THREADS"] = str(threads)
    reader, writer = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    made: OrderedDict = OrderedDict()
    while True:
        try:
            job = reader.recv()
        except (EOFError, OSError):
            return 0  # the worker is gone
        try:
            answer = ("ok", *run(job, made))
        except Exception as err:  # noqa: BLE001 (what it lacks, said; the worker answers 409)
            answer = ("error", f"{type(err).__name__}: {err}", 0.0)
        try:
            writer.send(answer)
        except (OSError, BrokenPipeError):
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
