"""What masked-language-model pre-training buys the text encoder on SMS spam.

    python benchmarks/text_pretraining.py [--seeds 3] [--epochs 5] [--pretrain 3]
                                          [--width 64] [--depth 2] [--labelled 1.0]

Prepares SMS spam as the loop does (``data.source: text``: duplicates dropped, the
reference 80/20 split, the tokenizer learnt on the train split), then trains the same
encoder from the same initial weights with and without ``--pretrain`` epochs of
masked-language-model pre-training on the training texts (BERT's recipe: 15% of the
tokens masked, the tied MLM head), the two sides alternating, one pair per seed.
``--labelled`` fine-tunes on that share of the training labels only (pre-training still
reads every training text), where pre-training is expected to matter most. Prints each
run's spam F1 on the test split and the median gain.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SMS = REPO.parent / "shared" / "data" / "sms_spam" / "sms_spam.csv"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--pretrain", type=int, default=3)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--labelled", type=float, default=1.0)
    args = parser.parse_args()

    import torch
    from sklearn.metrics import f1_score

    from components.core.config import parse_params
    from components.core.paths import Workspace
    from components.core.predict import torch_predictor
    from components.core.splits import Split, load_meta, load_split
    from components.prepare.stage import prepare_stage
    from components.train.models import build_net
    from components.train.objectives import Masking
    from components.train.trainer import net_spec, pretrain, train_classifier

    params = parse_params({
        "data": {"source": "text", "text": {"path": str(SMS)}},
        "train": {"model": "transformer",
                  "transformer": {"width": args.width, "depth": args.depth, "heads": 4},
                  "epochs": args.epochs, "batch_size": 32, "learning_rate": 0.001,
                  "dropout": 0.1},
    })  # fmt: skip
    ws = Workspace(Path(tempfile.mkdtemp(prefix="mloop-pretrain-")))
    prepare_stage(params, ws)
    meta = load_meta(ws.prepared)
    train, val, test = (load_split(ws.prepared, s) for s in ("train", "val", "test"))
    spam = meta["classes"].index("spam")
    rng = np.random.default_rng(0)
    keep = np.sort(rng.permutation(len(train))[: max(64, int(args.labelled * len(train)))])
    labelled = Split(np.asarray(train.x)[keep], train.y[keep])
    spec = net_spec(params, meta, train)
    pre_cfg = params.train.model_copy(update={"epochs": args.pretrain})
    rows = []
    for seed in range(args.seeds):
        sides = ("without", "with") if seed % 2 == 0 else ("with", "without")
        for side in sides:
            torch.manual_seed(seed)
            net = build_net(spec)
            start = time.perf_counter()
            if side == "with":
                net = pretrain(net, pre_cfg, seed, np.asarray(train.x), np.asarray(val.x),
                               Masking(spec.vocab_size)).net  # fmt: skip
            net = train_classifier(net, params.train, seed, labelled, val).net
            seconds = time.perf_counter() - start
            pred = torch_predictor(net)(np.asarray(test.x)).argmax(1)
            f1 = float(f1_score(test.y, pred, pos_label=spam))
            rows.append((seed, side, f1, seconds))
            print(f"seed {seed} {side:>7} pre-training: spam F1 {f1:.4f} ({seconds:.0f} s)",
                  flush=True)  # fmt: skip
    print(f"\nencoder width {args.width}, {args.depth} blocks; {args.epochs} fine-tuning epochs on"
          f" {len(labelled)} labelled texts; pre-training {args.pretrain} epochs on"
          f" {len(train)} texts")  # fmt: skip
    print("| pre-training | spam F1 median | runs |\n|---|---|---|")
    medians = {}
    for side in ("without", "with"):
        values = [f for _, s, f, _ in rows if s == side]
        medians[side] = statistics.median(values)
        print(f"| {side} | {medians[side]:.4f} | {', '.join(f'{v:.4f}' for v in values)} |")
    print(f"\ngain: {100 * (medians['with'] - medians['without']):+.2f} F1 points (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
