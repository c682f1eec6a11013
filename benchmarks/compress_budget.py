"""The compress stage's cost against the train stage's, in one process.

    mloop --workspace W run                       # once: a champion to compress
    python benchmarks/compress_budget.py --workspace W [--rounds 5]

The train stage and the compress stage run in turns (train, compress, train, ...)
with the workspace's params, imports paid before the clocks start; the table gives
each round and the medians. Target (issue 18): compress / train <= 1 with the
default params. Each round registers nothing new: compress works on the champion.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", required=True, help="a workspace after `mloop run`")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from components.core.config import load_params
    from components.core.paths import Workspace, configure_environment

    ws = Workspace(Path(args.workspace).resolve())
    configure_environment(ws)
    params = load_params(ws.params)
    from components.compress.stage import compress_stage
    from components.train.stage import train_stage

    logging.disable(logging.WARNING)  # the stages' progress lines would bury the table
    times: dict[str, list[float]] = {"train": [], "compress": []}
    for _ in range(args.rounds):
        for name, stage in (("train", train_stage), ("compress", compress_stage)):
            start = time.perf_counter()
            stage(params, ws)
            times[name].append(time.perf_counter() - start)
    print(f"| stage | {' | '.join(f'round {i + 1}' for i in range(args.rounds))} | median |")
    print(f"|---|{'---|' * (args.rounds + 1)}")
    for name, values in times.items():
        cells = " | ".join(f"{v:.1f} s" for v in values)
        print(f"| {name} | {cells} | {statistics.median(values):.1f} s |")
    ratio = statistics.median(times["compress"]) / statistics.median(times["train"])
    print(f"\ncompress / train: {ratio:.2f} (target <= 1)")


if __name__ == "__main__":
    main()
