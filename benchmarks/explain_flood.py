"""An /explain flood beside cheap predictions: does one caller's expensive route hurt the others?

    python benchmarks/explain_flood.py [--workspace W] [--rounds 5] [--seconds 10]
                                       [--predict-rate 50] [--flood-rate 20]

Issue 39's row 1, sent as the attacker sent it: SMS spam (shared) with the default text
model (``mloop run`` builds the workspace once, or give one), its Bento served as ``mloop
serve`` serves it (2 workers). Open-loop traffic from this process alternates, ``--rounds``
times (the first side alternating per round), between

- **predict**: single-text ``/predict_text`` at ``--predict-rate`` per second;
- **predict+flood**: the same, and ``/explain`` with 16 texts of 5,000 characters at
  ``--flood-rate`` per second;

each ``--seconds`` long. It prints per round and as the median over rounds: /predict_text's
p50 and p99 in each state, their ratio, the predictions that were not answered 200 (shed or
failed), and how the flood was answered (200, 429 with Retry-After, 503, 413).
Target (issue 39): p99 with the flood under 3x without, 0 predictions shed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.explain import SHARED, bodies, build, p, paced  # noqa: E402 -- after the path


def flood_bodies(n: int = 20) -> list[bytes]:
    """/explain bodies of 16 texts of 5,000 characters, made of SMS messages."""
    import pandas as pd

    texts = pd.read_csv(SHARED / "sms_spam" / "sms_spam.csv")["text"].astype(str).tolist()
    out = []
    for i in range(n):
        chunk = []
        for j in range(16):
            long, k = "", (i * 16 + j) * 7
            while len(long) < 5000:
                long += texts[k % len(texts)] + " "
                k += 1
            chunk.append(long[:5000])
        out.append(json.dumps({"texts": chunk}).encode())
    return out


def measure(root: Path, args) -> list[dict]:
    from components.core.records import read_json
    from components.serve import supervisor
    from tests.helpers import free_port

    bento = read_json(root / "reports" / "bento.json", "package")
    predict, flood = bodies(root, "text"), flood_bodies()
    port = free_port()
    os.environ.update({"BENTOML_HOME": str(root / ".mloop" / "bentoml"),
                       "MLOOP_INFERENCE_LOG": str(root / "flood-bench.sqlite")})  # fmt: skip
    log = root / "flood-bench.out"
    server = supervisor.start(bento["bento_tag"], "127.0.0.1", port, log)
    rounds = []
    try:
        supervisor.wait_ready("127.0.0.1", port, server, log_file=log)
        base = f"http://127.0.0.1:{port}/"
        warm: list = []  # both workers' explainers made, both paths warm
        asyncio.run(paced(base + "explain", predict, 4, 3.0, warm))
        asyncio.run(paced(base + "predict_text", predict, args.predict_rate, 2.0, warm))
        for r in range(args.rounds):
            found = {}
            for side in ["predict", "predict+flood"][:: 1 if r % 2 == 0 else -1]:
                predicted, flooded = [], []

                async def both(side=side, predicted=predicted, flooded=flooded) -> None:
                    jobs = [paced(base + "predict_text", predict, args.predict_rate,
                                  args.seconds, predicted)]  # fmt: skip
                    if side == "predict+flood":
                        jobs.append(paced(base + "explain", flood, args.flood_rate,
                                          args.seconds, flooded))  # fmt: skip
                    await asyncio.gather(*jobs)

                asyncio.run(both())
                ok = [x[0] for x in predicted if x[1] == 200]
                answered = dict(collections.Counter(x[1] for x in flooded))
                found[side] = f = {"p50": p(ok, 50), "p99": p(ok, 99), "sent": len(predicted),
                                   "not_200": sum(1 for x in predicted if x[1] != 200),
                                   "flood": answered}  # fmt: skip
                said = f"; /explain answered {answered}" if flooded else ""
                print(f"  round {r + 1} {side:14} predict p50 {f['p50']:6.1f} p99 {f['p99']:7.1f}"
                      f" ms, {f['not_200']} of {f['sent']} not 200{said}", flush=True)  # fmt: skip
            rounds.append(found)
    finally:
        supervisor.stop(server)
    return rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/mloop-explain-sms"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--predict-rate", type=float, default=50.0)
    parser.add_argument("--flood-rate", type=float, default=20.0)
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"skipped: {SHARED} is absent (SMS spam)")
        return 0
    rounds = measure(build(args.workspace, "text"), args)
    med = {side: {k: statistics.median(r[side][k] for r in rounds) for k in ("p50", "p99")}
           for side in ("predict", "predict+flood")}  # fmt: skip
    shed = sum(r["predict+flood"]["not_200"] for r in rounds)
    sent = sum(r["predict+flood"]["sent"] for r in rounds)
    flood = collections.Counter()
    for r in rounds:
        flood.update(r["predict+flood"]["flood"])
    ratio = med["predict+flood"]["p99"] / med["predict"]["p99"]
    print("\n| side | /predict_text p50 | p99 | not 200 |")
    print("|---|---|---|---|")
    for side in ("predict", "predict+flood"):
        bad = sum(r[side]["not_200"] for r in rounds)
        total = sum(r[side]["sent"] for r in rounds)
        print(f"| {side} | {med[side]['p50']:.1f} ms | {med[side]['p99']:.1f} ms |"
              f" {bad} of {total} |")  # fmt: skip
    print(f"\np99 ratio (flood / alone, medians of {len(rounds)} rounds): {ratio:.2f}x;"
          f" predictions not answered 200 under the flood: {shed} of {sent};"
          f" /explain answered: {dict(sorted(flood.items()))}")  # fmt: skip
    met = ratio < 3 and shed == 0
    print(f"target: p99 ratio < 3x and 0 predictions shed: {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
