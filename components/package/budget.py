"""A worker's budget for expensive requests (explanations now; generation next), kept apart
from the cheap routes' capacity.

Measured before this existed: 20 explanations a second of 16 long texts beside 50
predictions a second shed 656 of 1,000 predictions (the explanations filled the gate's
``MLOOP_MAX_IN_FLIGHT``) and left the rest at p99 10.8 s: one such explanation costs about
0.49 CPU-s, 109 predictions, and a rate in requests a second could not tell it from a
cheap one. Here a request is admitted by what it will cost in CPU-seconds:

- ``UnitCost`` estimates it before it runs, from its size in its own units (tokens of its
  texts, rows, images) and the CPU-seconds per unit the last ones measured;
- ``CpuBudget`` is a token bucket of CPU-seconds: it refills at ``share`` CPU-seconds a second
  (the long-run part of a core the expensive route may take) up to ``capacity`` (the work
  that may wait or run at once); a request whose estimate it cannot cover is shed at once
  with the seconds after which it could be, and the measured cost settles the estimate.

Only the standard library: the gate and the service import it in every worker.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class CpuBudget:
    """CPU-seconds a worker's expensive route may spend: ``share`` a second, ``capacity`` at
    most ahead (also what one request may cost: a larger estimate waits for a full bucket)."""

    def __init__(self, share: float, capacity: float,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        if share <= 0 or capacity <= 0:
            raise ValueError("a CPU budget needs a share and a capacity above 0")
        self.share, self.capacity, self.clock = share, capacity, clock
        self.tokens, self.at = capacity, clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.share)
        self.at = now

    def admit(self, estimate: float) -> float | None:
        """Take ``estimate`` CPU-seconds (None: admitted), or the seconds until it could be."""
        with self._lock:
            self._refill()
            wanted = min(estimate, self.capacity)  # the largest waits for a full bucket
            if self.tokens >= wanted:
                self.tokens -= estimate
                return None
            return (wanted - self.tokens) / self.share

    def settle(self, estimate: float, spent: float) -> None:
        """What an admitted request really cost: the difference goes back (or is owed)."""
        with self._lock:
            self._refill()
            self.tokens = min(self.capacity, self.tokens + estimate - spent)

    @property
    def available(self) -> float:
        with self._lock:
            self._refill()
            return self.tokens


class UnitCost:
    """CPU-seconds per unit of an expensive request, learnt from the ones measured (an
    exponentially weighted mean); before the first, a request is taken as the whole
    ``unknown`` (one at a time, until one was measured)."""

    def __init__(self, unknown: float, weight: float = 0.3) -> None:
        self.unknown, self.weight = unknown, weight
        self.per_unit: float | None = None

    def estimate(self, units: float) -> float:
        return self.unknown if self.per_unit is None else self.per_unit * max(units, 1.0)

    def observe(self, units: float, seconds: float) -> None:
        if seconds < 0 or not math.isfinite(seconds):
            return
        seen = seconds / max(units, 1.0)
        self.per_unit = seen if self.per_unit is None else (
            (1 - self.weight) * self.per_unit + self.weight * seen)  # fmt: skip


def retry_after(seconds: float) -> int:
    """Whole seconds for a Retry-After header (at least 1)."""
    return max(1, math.ceil(seconds))
