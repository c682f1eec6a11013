"""Throughput of the validation gate: rows (or images) per second.

    python benchmarks/validate.py [--rows 1000000] [--images 100000] [--repeats 3]

Synthetic data of the requested size goes through the same gate as
``mloop validate`` (table or per-image statistics, Great Expectations suite,
reports). Reading the data is not timed; building the gate's tables is. The
table shows the median of the repeats. Target: 50,000 rows/s on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from components.core.config import SyntheticSource, ValidateConfig
    from components.core.kinds.sources import synthetic
    from components.core.logs import setup_logging
    from components.validate.stage import run_gate
    from components.validate.tables import gate_input

    setup_logging()
    import great_expectations  # noqa: F401  (import once, outside the timings)

    cases = {
        f"table {args.rows:,} x {args.columns}": SyntheticSource(
            kind="tabular", samples=args.rows, features=args.columns, classes=4
        ),
        f"images {args.images:,} x 8x8": SyntheticSource(
            kind="images", samples=args.images, image_size=8, classes=4
        ),
    }
    cfg = ValidateConfig(max_duplicate_share=0.05)
    print(f"{'data':<28}{'rows':>12}{'median s':>10}{'rows/s':>12}{'passed':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, source in cases.items():
            raw = synthetic(source, seed=0)
            times, passed = [], None
            for _ in range(args.repeats):
                start = time.perf_counter()
                result = run_gate(gate_input(raw, "bench"), cfg, None, Path(tmp), Path(tmp) / "q")
                times.append(time.perf_counter() - start)
                passed = result.passed
            median = statistics.median(times)
            print(
                f"{name:<28}{len(raw):>12,}{median:>10.2f}{len(raw) / median:>12,.0f}{passed!s:>8}"
            )


if __name__ == "__main__":
    main()
