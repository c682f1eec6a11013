"""Sweep fan-out: 4 trials one after another against 4 trials on Dask, side by side.

    python benchmarks/fanout.py                 # 4 trials, 2 workers, 5 alternating rounds
    python benchmarks/fanout.py --trials 8 --workers 4 --rounds 7

Three sides, each the Prefect flow ``sweep`` over the same prepared digits:

* ``sequential``: ``--parallel 1``, every trial in this process in turn;
* ``dask, new cluster``: ``--parallel N``, a local cluster of N single-threaded
  worker processes started for the sweep (what ``mloop sweep --parallel N`` does);
* ``dask, running cluster``: the same on a cluster started once beforehand
  (``MLOOP_DASK_ADDRESS``), so the cluster's start is not counted.

The space is learning rate and dropout only and pruning is off, so every trial
trains the same network for the same epochs and the sides do the same work. Rounds
alternate the sides; the table shows the median wall time and the speed-up
against ``sequential``. Each trial's torch uses cores / N threads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6, help="epochs per trial")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workspace", type=Path, help="default: a new temporary folder")
    args = parser.parse_args()

    from components.core.paths import Workspace, configure_environment

    ws = Workspace((args.workspace or Path(tempfile.mkdtemp(prefix="mloop-fanout-"))).resolve())
    ws.root.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"]["epochs"] = args.epochs
    raw["sweep"].update(warmup_epochs=args.epochs, space={
        "train.learning_rate": {"low": 0.0003, "high": 0.01, "log": True},
        "train.dropout": {"low": 0.0, "high": 0.5},
    })  # fmt: skip
    ws.params.write_text(yaml.safe_dump(raw))
    configure_environment(ws)

    from distributed import Client, LocalCluster

    from components.core.config import load_params
    from components.prepare.stage import prepare_stage
    from flows.sweep import sweep_flow

    prepare_stage(load_params(ws.params), ws)

    def run(parallel: int) -> float:
        start = time.perf_counter()
        sweep_flow(parallel)(
            params_file=str(ws.params), workspace=str(ws.root), trials=args.trials,
            parallel=parallel,
        )  # fmt: skip
        return time.perf_counter() - start

    def on_cluster(address: str) -> float:
        os.environ["MLOOP_DASK_ADDRESS"] = address
        try:
            return run(args.workers)
        finally:
            del os.environ["MLOOP_DASK_ADDRESS"]

    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           dashboard_address=None)  # fmt: skip
    client = Client(cluster)
    sides = {
        "sequential": lambda: run(1),
        "dask, new cluster": lambda: run(args.workers),
        "dask, running cluster": lambda: on_cluster(cluster.scheduler_address),
    }
    times: dict[str, list[float]] = {name: [] for name in sides}
    try:
        run(1)  # warm-up: imports, the temporary Prefect server's first start
        for round_ in range(args.rounds):
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for name in order:
                times[name].append(sides[name]())
                print(f"round {round_ + 1} {name}: {times[name][-1]:.1f} s", flush=True)
    finally:
        client.close()
        cluster.close()

    base = statistics.median(times["sequential"])
    print(f"\n{args.trials} trials x {args.epochs} epochs, {args.workers} Dask workers,"
          f" {os.cpu_count()} cores, median of {args.rounds} alternating rounds\n")  # fmt: skip
    print("| side | median s | min s | max s | speed-up |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {min(values):.1f} | {max(values):.1f} |"
              f" {base / median:.2f}x |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
