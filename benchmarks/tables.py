"""The champion of tables against the simplest honest peers, on the same test split.

    python benchmarks/tables.py [--root /tmp/mloop-tables] [--loop-rounds 5]
                                [--tables diabetes,breast_cancer,wine,adult]

For each table, ``mloop run`` in a fresh workspace with the default params (the network,
gradient-boosted trees and the linear model; the gate picks by ``register.metric: auto`` on
the validation split), then the test-split scores of each candidate as the evaluate stage
wrote them (``metrics.json``, ``baseline_metrics.json``) and which one the gate made
champion. The tables: scikit-learn's diabetes (442 rows, a regression: RMSE), breast
cancer (569 rows, 2 classes) and wine (178 rows, 3 classes), which ship with scikit-learn
and none of which the loop was developed on, and UCI Adult (shared: 32,561 rows plus its
own test file of 16,281).

It prints one row per table: each candidate's test score, the champion, the better of the
trees and the linear model, and whether the champion is within 0.5 point of accuracy (1%
of RMSE) of it; for Adult the champion's and the linear model's accuracy and ROC AUC; and
the whole loop's wall time on diabetes, the median of ``--loop-rounds`` fresh runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

from benchmarks.text_loop import run_loop  # noqa: E402 -- after the path

GAPPY = ("workclass", "occupation", "native_country")


def source(name: str, root: Path) -> dict:
    """``data.tabular`` of one table (scikit-learn's written as CSV into ``root``)."""
    if name == "adult":
        return {"path": str(SHARED / "adult" / "adult_train.csv"),
                "test_path": str(SHARED / "adult" / "adult_test.csv"), "label": "income",
                "missing": {"columns": dict.fromkeys(GAPPY, "impute")}}  # fmt: skip
    import sklearn.datasets

    frame = getattr(sklearn.datasets, f"load_{name}")(as_frame=True).frame
    if name == "diabetes":
        frame = sklearn.datasets.load_diabetes(as_frame=True, scaled=False).frame
    frame.to_csv(root / f"{name}.csv", index=False)
    return {"path": f"{name}.csv", "label": "target"}


def run(name: str, root: Path) -> tuple[dict, float]:
    """A fresh workspace of table ``name`` run once; its candidates' test scores and time."""
    import yaml

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"].update(source="tabular", tabular=source(name, root))
    raw["register"]["model_name"] = name.replace("_", "-")
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    done, seconds = run_loop(root)
    if done.returncode:
        sys.exit(f"mloop run failed in {root}: see {root / 'run.log'}")
    reports = root / "reports"
    scores = {"network": json.loads((root / "metrics.json").read_text()),
              **json.loads((reports / "baseline_metrics.json").read_text())}  # fmt: skip
    registry = json.loads((reports / "registry.json").read_text())
    meta = json.loads((root / "data" / "prepared" / "meta.json").read_text())
    chosen = "network" if registry["family"] not in scores else registry["family"]
    return {"scores": scores, "champion": chosen, "family": registry["family"],
            "task": meta["task"], "rows": sum(meta["counts"].values())}, seconds  # fmt: skip


def compare(found: dict) -> dict:
    """The champion's score against the better of the trees and the linear model."""
    regression = found["task"] == "regression"
    metric = "test_rmse" if regression else "test_accuracy"
    s = found["scores"]
    peers = {k: s[k][metric] for k in ("trees", "linear")}
    best_peer = min(peers.values()) if regression else max(peers.values())
    mine = s[found["champion"]][metric]
    if regression:
        gap, within = mine / best_peer - 1, mine <= 1.01 * best_peer
        said = f"{100 * gap:+.2f}% RMSE"
    else:
        gap, within = mine - best_peer, mine >= best_peer - 0.005
        said = f"{100 * gap:+.2f} pt"
    return {"metric": metric, "peers": peers, "best_peer": best_peer, "mine": mine,
            "said": said, "within": within}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/mloop-tables"))
    parser.add_argument("--loop-rounds", type=int, default=5)
    parser.add_argument("--tables", default="diabetes,breast_cancer,wine,adult")
    args = parser.parse_args()
    results, loops = {}, []
    for name in args.tables.split(","):
        found, seconds = run(name, args.root / name)
        results[name] = found
        print(f"{name}: {found['task']}, champion {found['family']} ({seconds:.0f} s)", flush=True)
        if name == "diabetes":
            loops.append(seconds)
    for i in range(1, args.loop_rounds if "diabetes" in results else 0):
        loops.append(run("diabetes", args.root / f"diabetes-{i}")[1])
        print(f"diabetes loop {i + 1}: {loops[-1]:.0f} s", flush=True)

    print(
        "\n| table | task | rows | metric | network | trees | linear | champion | best of"
        " trees, linear | champion vs it | within target |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, found in results.items():
        c = compare(found)
        s = found["scores"]
        cells = " | ".join(f"{s[k][c['metric']]:.4f}" for k in ("network", "trees", "linear"))
        print(f"| {name} | {found['task']} | {found['rows']:,} | {c['metric']} | {cells}"
              f" | {found['family']} {c['mine']:.4f} | {c['best_peer']:.4f} | {c['said']}"
              f" | {'yes' if c['within'] else 'NO'} |")  # fmt: skip
    if "adult" in results:
        s, champion = results["adult"]["scores"], results["adult"]["champion"]
        print(f"\nAdult: champion ({results['adult']['family']}) accuracy"
              f" {s[champion]['test_accuracy']:.4f}, ROC AUC {s[champion]['test_roc_auc']:.4f}"
              f" (targets 0.87, 0.92); linear accuracy {s['linear']['test_accuracy']:.4f},"
              f" ROC AUC {s['linear']['test_roc_auc']:.4f}")  # fmt: skip
    if loops:
        print(f"\ndiabetes, the whole loop (mloop run, fresh workspace): median"
              f" {statistics.median(loops):.0f} s of {len(loops)} runs"
              f" ({', '.join(f'{t:.0f}' for t in loops)}); target under 120 s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
