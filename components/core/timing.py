"""How long a prediction takes: the one latency measure of the gate, compression and benchmarks."""

from __future__ import annotations

import time

import numpy as np


def latency_ms(predict, example: np.ndarray, repeats: int) -> tuple[float, float]:
    """p50 and p95 wall time of one call on the CPU, after a warm-up."""
    times = []
    for _ in range(10):
        predict(example)
    for _ in range(repeats):
        start = time.perf_counter()
        predict(example)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))
