"""The text encoder under Lightning's FSDP strategy, beside the default strategy (GPU check).

    python benchmarks/text_fsdp.py [--samples 20000] [--length 128] [--width 256]
                                   [--depth 4] [--epochs 2] [--rounds 3]

Trains mloop's BERT-style encoder (components/train/models.py: TextEncoder) on
synthetic token ids (the class decided by which of two token ranges dominates) with
``train.strategy: fsdp`` on every visible GPU and with ``auto``, alternating, and
prints samples/s for each and their ratio. Lightning runs FSDP on GPUs only; with no
GPU this says so and exits 0 (what it said on this project's CPU machine: "The
strategy `fsdp` requires a GPU accelerator, but received `accelerator='cpu'`").
Needs only torch, lightning and numpy.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train_throughput import load_settings, with_train  # noqa: E402  (beside this file)


def tokens(samples: int, length: int, vocab: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, samples)
    low = rng.integers(5, vocab // 2, (samples, length))
    high = rng.integers(vocab // 2, vocab, (samples, length))
    x = np.where(rng.random((samples, length)) < np.where(y[:, None] == 1, 0.7, 0.3), high, low)
    x[:, 0] = 2  # [CLS]
    return x.astype(np.int32), y.astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch

    from components.core.families import DataSpec, NetSpec
    from components.core.splits import Split
    from components.train.models import build_net
    from components.train.trainer import resolve_precision, train_classifier

    if not torch.cuda.is_available():
        print("text fsdp: skipped, no GPU (Lightning runs the fsdp strategy on GPUs only)")
        return
    vocab = 8000
    x, y = tokens(args.samples, args.length, vocab, seed=0)
    val = Split(*tokens(512, args.length, vocab, seed=1))
    spec = NetSpec.of("transformer", DataSpec("text", (args.length,), 2, vocab_size=vocab),
                      0.1, width=args.width, depth=args.depth, heads=8)  # fmt: skip
    base = build_net(spec)
    settings = load_settings()
    rates: dict[str, list[float]] = {"fsdp": [], "auto": []}
    for r in range(args.rounds):
        for strategy in ["fsdp", "auto"] if r % 2 == 0 else ["auto", "fsdp"]:
            cfg = with_train(settings.train, epochs=args.epochs, batch_size=64,
                             learning_rate=3e-4, accelerator="gpu", strategy=strategy,
                             devices="auto", compile=False)  # fmt: skip
            cfg = with_train(cfg, precision=resolve_precision(cfg))
            start = time.perf_counter()
            result = train_classifier(copy.deepcopy(base), cfg, 0, Split(x, y), val)
            rate = args.samples * args.epochs / (time.perf_counter() - start)
            rates[strategy].append(rate)
            print(
                f"  round {r + 1} {strategy:<5} {rate:9,.0f} samples/s, val acc"
                f" {result.history[-1]['val/acc']:.3f} on {result.device}",
                flush=True,
            )
    fsdp, auto = (statistics.median(rates[s]) for s in ("fsdp", "auto"))
    print(
        f"text encoder {args.depth}x{args.width}, {args.length} tokens, {cfg.precision}:"
        f" fsdp {fsdp:,.0f} samples/s, auto {auto:,.0f}; ratio fsdp/auto {fsdp / auto:.2f}"
    )


if __name__ == "__main__":
    main()
