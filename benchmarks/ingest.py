"""``mloop ingest`` of a large CSV batch, gate included, beside reading the same file with pandas.

    python benchmarks/ingest.py [--rows 1000000] [--rounds 5] [--workspace /tmp/mloop-ingest]

Makes a workspace once: a census-like reference table (20,000 rows: 6 integer
columns, 2 float columns, 3 categorical ones and a label, some cells missing under an
``impute`` rule), prepared and gated so the data set has its reference profile. Then
writes ``rounds`` different CSV batches of ``rows`` rows from the same distribution
and, round by round, alternating which side goes first, times ``ingest`` (read under
the data set's rules, the Great Expectations gate against the profile, the HTML and
JSON reports, the content hash and the copy into ``data/batches``) and, as the
simplest honest peer, ``pandas.read_csv`` of the same file. Each accepted batch is
removed again before the next round. Prints the medians and their ratio. Target
(issue 19): under 30 s for 1,000,000 rows.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def table(rows: int, seed: int):
    import pandas as pd

    rng = np.random.default_rng(seed)
    label = rng.choice(["<=50K", ">50K"], size=rows, p=[0.76, 0.24])
    rich = label == ">50K"
    frame = pd.DataFrame(
        {
            "age": rng.integers(17, 91, rows),
            "education_num": rng.integers(1, 17, rows),
            "hours_per_week": rng.integers(1, 100, rows),
            "capital_gain": rng.integers(0, 100, rows) * 1000,
            "capital_loss": rng.integers(0, 50, rows) * 100,
            "children": rng.integers(0, 8, rows),
            "score": np.round(rng.uniform(0, 1, rows) + rich * 0.2, 4),
            "weight": np.round(rng.uniform(10_000, 1_500_000, rows), 1),
            "workclass": rng.choice(["Private", "Self-emp", "Gov", "Never-worked"], rows),
            "occupation": rng.choice([f"occ-{i}" for i in range(14)], rows),
            "country": rng.choice([f"country-{i}" for i in range(40)], rows),
            "income": label,
        }
    )
    gaps = rng.random(rows) < 0.02  # missing cells, as Adult has them
    frame.loc[gaps, "occupation"] = None
    return frame


def make_workspace(ws: Path):
    import yaml

    from components.core.config import load_params
    from components.core.paths import Workspace, configure_environment
    from components.prepare.stage import prepare_stage
    from components.validate.stage import validate_stage

    space = Workspace(ws)
    configure_environment(space)
    if not (ws / "params.yaml").is_file():
        ws.mkdir(parents=True, exist_ok=True)
        table(20_000, seed=0).to_csv(ws / "census.csv", index=False)
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        raw["data"].update(source="tabular", tabular={
            "path": "census.csv", "label": "income",
            "missing": {"columns": {"occupation": "impute"}},
        })  # fmt: skip
        (ws / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params(ws / "params.yaml")
    if not (ws / "reports" / f"profile-{params.data.name}.json").is_file():
        prepare_stage(params, space)
        validate_stage(params, space)
    return params, space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workspace", default="/tmp/mloop-ingest")
    args = parser.parse_args()

    import pandas as pd

    from components.core.logs import setup_logging
    from components.ingest.ingest import ingest

    setup_logging()
    import great_expectations  # noqa: F401  (imported once, outside the timings)

    ws_root = Path(args.workspace)
    params, ws = make_workspace(ws_root)
    files = []
    for r in range(args.rounds):
        path = ws_root / "batches-in" / f"batch-{args.rows}-{r}.csv"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            table(args.rows, seed=100 + r).to_csv(path, index=False)
        files.append(path)
    mb = files[0].stat().st_size / 1e6
    print(f"{args.rows:,}-row CSV batches of {mb:.0f} MB; {args.rounds} rounds, sides alternating")

    times: dict[str, list[float]] = {"mloop ingest": [], "pandas.read_csv": []}
    for r, path in enumerate(files):
        sides = list(times) if r % 2 == 0 else list(reversed(times))
        for side in sides:
            start = time.perf_counter()
            if side == "mloop ingest":
                result = ingest(path, params, ws)
                seconds = time.perf_counter() - start
                if not result.accepted:
                    raise SystemExit(f"round {r}: the batch was refused: {result.reason}")
                shutil.rmtree(result.batch.folder)
            else:
                pd.read_csv(path)
                seconds = time.perf_counter() - start
            times[side].append(seconds)
            print(f"  round {r + 1} {side:<16} {seconds:6.2f} s", flush=True)

    print("\n| side | median s | rows/s | rounds |\n|---|---|---|---|")
    medians = {side: statistics.median(t) for side, t in times.items()}
    for side, median in medians.items():
        print(f"| {side} | {median:.2f} | {args.rows / median:,.0f} | {len(times[side])} |")
    ratio = medians["mloop ingest"] / medians["pandas.read_csv"]
    print(f"\ningest / read_csv: {ratio:.1f}x; target: ingest under 30 s"
          f" ({'met' if medians['mloop ingest'] < 30 else 'NOT met'})")  # fmt: skip


if __name__ == "__main__":
    main()
