"""The ``monitor`` check on a large inference log: how long 100,000 logged predictions take.

    mloop run                                  # once: a champion in the workspace
    python benchmarks/monitor.py [--workspace .] [--rows 100000] [--repeats 5]

Fills a fresh inference log with ``--rows`` predictions of the champion on test
images (half of them shifted, so the check finds drift and writes its full
report), then times ``check_production`` over the whole log from the start,
``--repeats`` times, and prints each phase's share. Target: under 60 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=".", help="a workspace `mloop run` trained")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--test-rows", type=int, help="override monitor.test_rows")
    args = parser.parse_args()

    from components.core.paths import Workspace, configure_environment

    ws = Workspace(Path(args.workspace).resolve())
    configure_environment(ws)
    import numpy as np

    from components.core.config import load_params
    from components.core.inference_log import InferenceLog
    from components.core.splits import load_split
    from components.monitor.drift import champion_predictor
    from components.monitor.production import check_production

    params = load_params(ws.params)
    if args.test_rows:
        monitor = params.monitor.model_copy(update={"test_rows": args.test_rows})
        params = params.model_copy(update={"monitor": monitor})
    test = load_split(ws.prepared, "test")
    predict = champion_predictor(params.registry.model_name)
    with tempfile.TemporaryDirectory() as tmp:
        log_file = Path(tmp) / "inference.sqlite"
        os.environ["MLOOP_INFERENCE_LOG"] = str(log_file)
        log = InferenceLog(log_file)
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        for first in range(0, args.rows, 1000):  # 1,000 predictions per write
            x = test.x[rng.integers(len(test.x), size=min(1000, args.rows - first))]
            if first >= args.rows // 2:
                x = np.clip(x + 3.0, 0, 16).astype(np.float32)
            proba = predict(x)
            log.append(f"bench-{first}", "1", x, list(proba.argmax(1)), proba.max(1))
        print(f"log of {args.rows:,} predictions written in {time.perf_counter() - start:.1f} s"
              f" ({log_file.stat().st_size / 2**20:.0f} MiB)")  # fmt: skip
        seconds = []
        for _ in range(args.repeats):
            # A fresh workspace each time (no saved position in the log), sharing the
            # prepared data; the checks' MLflow runs go to the workspace's store.
            check_ws = Workspace(Path(tempfile.mkdtemp(dir=tmp)))
            check_ws.prepared.parent.mkdir(parents=True)
            check_ws.prepared.symlink_to(ws.prepared, target_is_directory=True)
            result = check_production(params, check_ws)
            seconds.append(result.seconds)
            print(f"  {result.seconds:6.1f} s  {result.summary()}")
        median = statistics.median(seconds)
        verdict = "met" if median < 60 else "NOT met"
        print(f"median {median:.1f} s over {args.repeats} checks of {args.rows:,} rows"
              f" -> target < 60 s {verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
