"""The learning cycle on the digits: drift -> harvest -> retrain -> promote -> redeploy, timed.

    python benchmarks/cycle.py [--rounds 5] [--root /tmp/mloop-cycle] [--epochs N]

Each round makes a fresh workspace with the repository's params.yaml (``--epochs``
overrides train.epochs), trains the first champion (``mloop run``, not timed) and
serves it (``mloop serve``). Then, as in tests/test_closed_loop.py, production traffic
changes domain (the train split's digits inverted, each labelled through /feedback),
and the timed cycle starts: ``mloop monitor`` (the ``monitor`` flow) sees the drift,
its retrain harvests the labelled traffic, trains on it, the gate promotes on the
recent slice, a new Bento is built, and the cycle ends when ``mloop serve`` answers
with the new version. The peer, timed in the same round: a plain ``mloop run`` retrain
of the same workspace by hand (no monitor, no harvest, no redeploy). Prints the
medians and their ratio. Target (issue 19): the cycle under 3 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def served_version(port: int) -> str | None:
    import urllib.request

    from components.package.inputs import EXAMPLE_INPUT

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict", data=json.dumps({"images": EXAMPLE_INPUT}).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())["model_version"]
    except OSError:
        return None


def one_round(root: Path, epochs: int | None, port: int) -> dict:
    import yaml

    from components.core.config import load_params
    from components.core.credentials import first_token
    from components.core.kinds.base import drifted
    from components.core.paths import Workspace
    from components.core.splits import load_split
    from components.serve import traffic

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    if epochs:
        raw["train"]["epochs"] = epochs
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "PREFECT_", "BENTOML_", "MLOOP_"))
    }
    cli = [sys.executable, "-m", "flows.cli", "--workspace", str(root)]
    subprocess.run([*cli, "run"], cwd=REPO, env=env, check=True, capture_output=True)
    ws = Workspace(root)
    server = subprocess.Popen([*cli, "serve", "--port", str(port)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)  # fmt: skip
    try:
        for line in server.stdout:
            if b"ready" in line or server.poll() is not None:
                break
        first = served_version(port)
        params = load_params(ws.params)
        train = load_split(ws.prepared, "train")
        images = drifted(train.x, "invert", params.monitor, 16.0, np.random.default_rng(0))
        sent = traffic.run(f"http://127.0.0.1:{port}", images, train.y, rate=150,
                           duration_s=len(images) / 150, drift="invert", feedback=1.0,
                           labeller_token=first_token(ws.labellers))  # fmt: skip

        start = time.perf_counter()  # the monitor flow as `mloop monitor` runs it
        check = subprocess.run([*cli, "monitor"], cwd=REPO, env=env, capture_output=True,
                               text=True, check=True)  # fmt: skip
        new = json.loads((ws.reports / "bento.json").read_text())["model_version"]
        while served_version(port) != new:
            time.sleep(0.2)
        cycle = time.perf_counter() - start
        gate = json.loads((ws.reports / "gate.json").read_text())["decision"]

        start = time.perf_counter()  # the peer: a plain retrain by hand, same workspace
        subprocess.run([*cli, "run"], cwd=REPO, env=env, check=True, capture_output=True)
        plain = time.perf_counter() - start
        return {"cycle": cycle, "plain": plain, "promoted": gate["promote"],
                "drift": "DRIFT" in check.stdout, "versions": f"{first} -> {new}",
                "old on changed": sent.accuracy}  # fmt: skip
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--root", default="/tmp/mloop-cycle")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--port", type=int, default=3917)
    args = parser.parse_args()
    from components.core.logs import setup_logging

    setup_logging()
    rows = []
    for r in range(args.rounds):
        row = one_round(Path(args.root) / f"round-{r}", args.epochs, args.port)
        rows.append(row)
        print(f"round {r + 1}: cycle {row['cycle']:.1f} s, plain retrain {row['plain']:.1f} s,"
              f" drift {row['drift']}, promoted {row['promoted']}, served {row['versions']},"
              f" old champion on the changed traffic {row['old on changed']:.3f}",
              flush=True)  # fmt: skip
    cycle = statistics.median(r["cycle"] for r in rows)
    plain = statistics.median(r["plain"] for r in rows)
    print("\n| side | median s | rounds |\n|---|---|---|")
    print(f"| drift -> harvest -> retrain -> promote -> redeploy | {cycle:.1f} | {len(rows)} |")
    print(f"| plain retrain (mloop run) | {plain:.1f} | {len(rows)} |")
    print(f"\ncycle / plain retrain: {cycle / plain:.2f}x; target: the cycle under 180 s"
          f" ({'met' if cycle < 180 else 'NOT met'})")  # fmt: skip


if __name__ == "__main__":
    main()
