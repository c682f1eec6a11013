"""/explain under load, Integrated Gradients' completeness, and Adult's ranking against SHAP.

    python benchmarks/explain.py [--rounds 5] [--seconds 10] [--rate 10] [--predict-rate 100]
                                 [--table-workspace W] [--text-workspace W] [--kinds table,text]
                                 [--text-model ../shared/pretrained/all-MiniLM-L6-v2]

Builds two workspaces with ``mloop run`` (or reuses the ones given): UCI Adult (shared),
the network alone (``train.baseline: none``, so /explain runs Integrated Gradients, the
costly method), and SMS spam (shared) with the default text model. For each, the packaged
Bento is served as ``mloop serve`` serves it (2 workers), and open-loop traffic from this
process alternates, ``--rounds`` times, between

- **predict**: single-input /predict_rows or /predict_text at ``--predict-rate`` per second;
- **predict+explain**: the same, and single-input /explain at ``--rate`` per second;

each ``--seconds`` long (the first side alternates per round). It prints, per data set, the
median over rounds of /explain's p50/p99 and errors, /predict's p99 in each state and their
ratio; the completeness of the answers' Integrated Gradients (share within 5%, and the
steps they took); and for Adult the Spearman rank correlation between the network's
columns (mean |attribution| on validation) and the SHAP ranking of gradient-boosted trees
fitted on the same training split (what the loop's trees baseline is).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

from benchmarks.text_loop import run_loop  # noqa: E402 -- after the path


def build(root: Path, kind: str, text_model: str | None = None) -> Path:
    """A workspace of Adult (the network alone) or SMS spam (the default text model, or
    ``text_model``: a pretrained folder, its encoder frozen), run once."""
    import yaml

    if (root / "reports" / "bento.json").is_file():
        return root
    root.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    if kind == "table":
        raw["data"].update(source="tabular", tabular={
            "path": str(SHARED / "adult" / "adult_train.csv"),
            "test_path": str(SHARED / "adult" / "adult_test.csv"), "label": "income",
            "missing": {"columns": dict.fromkeys(("workclass", "occupation", "native_country"),
                                                 "impute")}})  # fmt: skip
        raw["register"].update(model_name="adult-explained")
    else:
        raw["data"].update(source="text", text={"path": str(SHARED / "sms_spam" / "sms_spam.csv")})
        raw["register"].update(model_name="sms-explained")
        if text_model:
            raw["train"].update(model="hf", finetune="frozen", hf={"model": text_model})
            raw["explain"]["sample"] = 40
            raw["compress"]["variants"] = ["onnx"]
    raw["train"]["baseline"] = "none"
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    done, seconds = run_loop(root)
    if done.returncode:
        sys.exit(f"mloop run failed in {root}: see {root / 'run.log'}")
    print(f"built {root} in {seconds:.0f} s", flush=True)
    return root


def bodies(root: Path, kind: str, n: int = 200) -> list[bytes]:
    """Single-input bodies from the test split: Adult's rows as the file gives them, SMS's
    texts."""
    import pandas as pd

    if kind == "table":
        test = pd.read_csv(SHARED / "adult" / "adult_test.csv", skipinitialspace=True,
                           na_values=["?"]).drop(columns="income").head(n)  # fmt: skip
        rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
                for r in test.to_dict("records")]  # fmt: skip
        return [json.dumps({"rows": [r]}).encode() for r in rows]
    frame = pd.read_csv(SHARED / "sms_spam" / "sms_spam.csv").tail(n)
    return [json.dumps({"texts": [t]}).encode() for t in frame["text"].astype(str)]


async def paced(url: str, payloads: list[bytes], rate: float, seconds: float, out: list) -> None:
    """Open loop: one request every 1/rate s for ``seconds``; (latency ms, status, body)."""
    import aiohttp

    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(body: bytes) -> None:
            start = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as answer:
                    text = await answer.read()
                    out.append(((time.perf_counter() - start) * 1e3, answer.status, text))
            except (TimeoutError, aiohttp.ClientError) as err:
                out.append(((time.perf_counter() - start) * 1e3, 0, str(err).encode()))

        tasks, start, i = [], time.perf_counter(), 0
        while (due := start + i / rate) < start + seconds:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(payloads[i % len(payloads)])))
            i += 1
        await asyncio.gather(*tasks)


def p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def measure(root: Path, kind: str, args) -> dict:
    from components.core.records import read_json
    from components.serve import supervisor
    from tests.helpers import free_port

    bento = read_json(root / "reports" / "bento.json", "package")
    route = "predict_rows" if kind == "table" else "predict_text"
    payloads = bodies(root, kind)
    port = free_port()
    env = {"BENTOML_HOME": str(root / ".mloop" / "bentoml"),
           "MLOOP_INFERENCE_LOG": str(root / "explain-bench.sqlite")}  # fmt: skip
    os.environ.update(env)
    server = supervisor.start(bento["bento_tag"], "127.0.0.1", port, root / "explain-bench.out")
    rounds = {"predict": [], "predict+explain": []}
    try:
        supervisor.wait_ready("127.0.0.1", port, server, log_file=root / "explain-bench.out")
        base = f"http://127.0.0.1:{port}/"
        warm: list = []  # both workers' explainers made, both paths warm
        asyncio.run(paced(base + "explain", payloads, 4, 3.0, warm))
        asyncio.run(paced(base + route, payloads, args.predict_rate, 2.0, warm))
        for r in range(args.rounds):
            order = ["predict", "predict+explain"][:: 1 if r % 2 == 0 else -1]
            for side in order:
                predicted, explained = [], []

                async def both(side=side, predicted=predicted, explained=explained) -> None:
                    jobs = [paced(base + route, payloads, args.predict_rate, args.seconds,
                                  predicted)]  # fmt: skip
                    if side == "predict+explain":
                        jobs.append(paced(base + "explain", payloads[::-1], args.rate,
                                          args.seconds, explained))  # fmt: skip
                    await asyncio.gather(*jobs)

                asyncio.run(both())
                rounds[side].append((predicted, explained))
                ok = [e for e in explained if e[1] == 200]
                print(f"  {kind} round {r + 1} {side:16} predict p99"
                      f" {p([x[0] for x in predicted], 99):7.1f} ms"
                      + (f"; explain p50 {p([x[0] for x in ok], 50):6.1f} p99"
                         f" {p([x[0] for x in ok], 99):6.1f} ms, {len(explained) - len(ok)} errors"
                         if explained else ""), flush=True)  # fmt: skip
    finally:
        supervisor.stop(server)
    alone = [p([x[0] for x in pr], 99) for pr, _ in rounds["predict"]]
    loaded = [p([x[0] for x in pr], 99) for pr, _ in rounds["predict+explain"]]
    explain = [ex for _, ex in rounds["predict+explain"]]
    every = [x for side in rounds.values() for pr, ex in side for x in pr + ex]
    complete = [e["completeness"] for ex in explain for _, status, body in ex if status == 200
                for e in json.loads(body)["explanations"] if e["completeness"]]  # fmt: skip
    steps, counts = np.unique([c["steps"] for c in complete], return_counts=True)
    return {
        "explain_p50": statistics.median(latency(ex, 50) for ex in explain),
        "explain_p99": statistics.median(latency(ex, 99) for ex in explain),
        "errors": sum(1 for x in every if x[1] != 200),
        "explained": sum(len(ex) for ex in explain),
        "predict_p99_alone": statistics.median(alone),
        "predict_p99_loaded": statistics.median(loaded),
        "within_5pct": float(np.mean([c["error"] <= 0.05 for c in complete])) if complete else None,
        "steps": {int(s): int(c) for s, c in zip(steps, counts, strict=True)},
    }


def latency(answers: list, q: float) -> float:
    return p([x[0] for x in answers if x[1] == 200], q)


def adult_rank_correlation(root: Path, seed: int = 42) -> tuple[float, list, list]:
    """Spearman between the network's column ranking (its explanations.json) and the SHAP
    ranking of trees fitted on the same prepared training split."""
    from scipy.stats import spearmanr

    from components.core.splits import load_meta, load_split
    from components.evaluate.explain.explainer import for_baseline
    from components.evaluate.explain.trained import data_view
    from components.train.baselines.trees import make

    explained = json.loads((root / "reports" / "explanations.json").read_text())
    network = {c["column"]: c["mean_abs"] for c in explained["models"]["network"]["columns"]}
    prepared = root / "data" / "prepared"
    meta = load_meta(prepared)
    train, val = load_split(prepared, "train"), load_split(prepared, "val")
    trees = make(seed).fit(train.x, train.y)
    view = data_view(prepared, meta)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(val.x), size=min(2000, len(val.x)), replace=False))
    x = np.asarray(val.x[pick])
    found, _ = for_baseline("trees", trees, view).attribute(x, trees.predict(x))
    shap = dict(zip(view.columns, np.abs(view.by_column(found.scores)).mean(0), strict=True))
    columns = list(view.columns)
    rho = spearmanr([network[c] for c in columns], [shap[c] for c in columns]).statistic
    rank = lambda d: sorted(d, key=lambda c: -d[c])  # noqa: E731
    return float(rho), rank(network), rank(shap)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=10.0, help="/explain requests per second")
    parser.add_argument("--predict-rate", type=float, default=100.0)
    parser.add_argument("--table-workspace", type=Path, default=Path("/tmp/mloop-explain-adult"))
    parser.add_argument("--text-workspace", type=Path, default=Path("/tmp/mloop-explain-sms"))
    parser.add_argument("--kinds", default="table,text")
    parser.add_argument("--text-model", help="a pretrained folder (MiniLM) for the text side")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"skipped: {SHARED} is absent (Adult and SMS spam)")
        return 0
    found = {}
    for kind in args.kinds.split(","):
        root = build(args.table_workspace if kind == "table" else args.text_workspace, kind,
                     args.text_model)  # fmt: skip
        found[kind] = measure(root, kind, args)
    print("\n| data | /explain p50 | /explain p99 | errors | /predict p99 alone | with /explain"
          " | ratio | IG within 5% | steps |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, f in found.items():
        ratio = f["predict_p99_loaded"] / f["predict_p99_alone"]
        print(f"| {kind} | {f['explain_p50']:.1f} ms | {f['explain_p99']:.1f} ms |"
              f" {f['errors']} of {f['explained']} | {f['predict_p99_alone']:.1f} ms |"
              f" {f['predict_p99_loaded']:.1f} ms | {ratio:.2f}x | {f['within_5pct']} |"
              f" {f['steps']} |")  # fmt: skip
    print("\ntargets: /explain p99 < 300 ms at", args.rate, "req/s, 0 errors; /predict p99 with"
          " explain traffic within 2x of without")  # fmt: skip
    if "table" in found:
        rho, network, shap = adult_rank_correlation(args.table_workspace)
        print(
            f"\nAdult: Spearman rank correlation, network (Integrated Gradients) vs trees"
            f" (SHAP), mean |attribution| per column on validation: {rho:.3f}"
        )
        print(f"  network: {', '.join(network)}\n  trees:   {', '.join(shap)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
