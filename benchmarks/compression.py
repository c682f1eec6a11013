"""CPU latency and size of the compression variants, measured side by side.

    python benchmarks/compression.py [--workspace DIR] [--rounds 7] [--batch 1 64]

Needs a workspace where the loop has run (models/model.pt, data/prepared). Each
round times every variant once, in turn, so machine noise hits all of them
alike; the table shows medians over the rounds and ratios to fp32.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=".")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=200, help="forward passes per timing")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    args = parser.parse_args()

    import torch

    from components.compression import latency_ms, magnitude_prune, quantize_int8, size_on_disk
    from components.config import load_params
    from components.data import load_split
    from components.evaluation import score, torch_predictor
    from components.logs import setup_logging
    from components.models import load_net
    from components.paths import Workspace

    setup_logging()
    ws = Workspace(Path(args.workspace).resolve())
    params = load_params(ws.params)
    net, _ = load_net(ws.model_file)
    test = load_split(ws.prepared, "test")
    pruned = magnitude_prune(net, params.compress.prune_amount).eval()
    variants = {"fp32": net, "pruned": pruned, "pruned+int8": quantize_int8(pruned)}
    classes = sorted({int(c) for c in test.y})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds")

    for batch in args.batch:
        x = test.x[:batch]
        timings: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, module in variants.items():  # alternate the sides within each round
                timings[name].append(latency_ms(module, x, args.repeats)[0])
        base = statistics.median(timings["fp32"])
        print(f"\nbatch {batch}")
        print(f"{'variant':<14}{'accuracy':>9}{'size KiB':>10}{'p50 ms':>9}{'speedup':>9}")
        for name, module in variants.items():
            acc = score(test.y, torch_predictor(module)(test.x), classes).accuracy
            median = statistics.median(timings[name])
            print(
                f"{name:<14}{acc:>9.4f}{size_on_disk(module) / 1024:>10.1f}"
                f"{median:>9.3f}{base / median:>8.2f}x"
            )


if __name__ == "__main__":
    main()
