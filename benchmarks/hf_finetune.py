"""A pretrained encoder fine-tuned through mloop's hf family and Lightning, on SMS spam:
samples per second and the time to the target spam F1 (the GPU check's step 5).

    python benchmarks/hf_finetune.py [--model ../shared/pretrained/all-MiniLM-L6-v2]
                                     [--epochs 3] [--precision auto] [--samples 0]
                                     [--target 0.957] [--allow-cpu]

The shared README's split (duplicates dropped, stratified 80/20, seed 42); the texts read
with the model's own ``tokenizer.json``; every weight fine-tuned as ``train.finetune: full``
does (``train.hf``'s defaults: 3e-5, linear warm-up and decay, batch 32), at
``train.precision: auto`` (bf16 on a GPU that has it). After each epoch the test split's
spam F1 is computed and reported (it decides nothing): the time to the target is the
training time at the first epoch that reaches it.

Needs ``transformers`` and ``tokenizers``, which the bare GPU machine lacks: without them,
without the model folder, or without a GPU (unless ``--allow-cpu``: the tests run a tiny
model so) it prints ``skipped:`` and why, and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SMS = REPO.parent / "shared" / "data" / "sms_spam" / "sms_spam.csv"
MINILM = REPO.parent / "shared" / "pretrained" / "all-MiniLM-L6-v2"


def token_ids(tokenizer_file: Path, texts: list[str], max_length: int) -> np.ndarray:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    pad = tokenizer.token_to_id("[PAD]") or 0
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=pad, pad_token="[PAD]", length=max_length)
    return np.asarray([e.ids for e in tokenizer.encode_batch(texts)], dtype=np.int32)


def sms_split(samples: int) -> dict[str, tuple[list[str], np.ndarray]]:
    """The shared README's split (test: 20%), its 80% split again 90/10 into train and the
    val split Lightning validates on; ``samples``: the first N of each."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    frame = pd.read_csv(SMS).drop_duplicates("text")
    texts, labels = frame["text"].astype(str).tolist(), (frame["label"] == "spam").to_numpy()
    labels = labels.astype(np.int64)
    fit_x, test_x, fit_y, test_y = train_test_split(texts, labels, test_size=0.2,
                                                    stratify=labels, random_state=42)  # fmt: skip
    train_x, val_x, train_y, val_y = train_test_split(fit_x, fit_y, test_size=0.1,
                                                      stratify=fit_y, random_state=42)  # fmt: skip
    splits = {"train": (train_x, train_y), "val": (val_x, val_y), "test": (test_x, test_y)}
    return {k: (x[: samples or None], y[: samples or None]) for k, (x, y) in splits.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=MINILM)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--samples", type=int, default=0)  # 0: all; else the first N of each
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--target", type=float, default=0.957)
    parser.add_argument("--allow-cpu", action="store_true")
    args = parser.parse_args()
    try:
        import tokenizers  # noqa: F401 -- both are needed; the bare GPU machine has neither
        import transformers  # noqa: F401
    except ImportError as err:
        print(f"skipped: fine-tuning a pretrained encoder needs transformers and tokenizers"
              f" ({err}); carry their wheels to this machine to run it")  # fmt: skip
        return 0
    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("skipped: no GPU here (--allow-cpu runs it on the CPU)")
        return 0
    if not (args.model / "tokenizer.json").is_file():
        print(f"skipped: no pretrained model with a tokenizer.json at {args.model}")
        return 0
    from sklearn.metrics import f1_score

    from benchmarks.train_throughput import load_settings, with_train
    from components.core import families
    from components.core.families import DataSpec, NetSpec
    from components.core.splits import Split
    from components.train.models import build_net
    from components.train.trainer import resolve_precision, train_classifier

    train, val, test = (Split(token_ids(args.model / "tokenizer.json", x, args.max_length), y)
                        for x, y in sms_split(args.samples).values())  # fmt: skip
    family = families.get("hf")
    spec = NetSpec.of("hf", DataSpec("text", (args.max_length,), 2), dropout=0.1,
                      model=str(args.model))  # fmt: skip
    settings = load_settings()
    tuned = {**family.overrides(spec.options, "full"), "epochs": args.epochs}
    cfg = with_train(settings.train, **tuned, precision=args.precision, limit_batches=None)
    torch.manual_seed(settings.seed)
    net = build_net(spec)
    reached: list[tuple[int, float, float]] = []  # (epoch, seconds so far, test spam F1)
    start, scoring = time.perf_counter(), [0.0]

    def on_epoch(epoch: int, metrics: dict) -> None:  # after each epoch: report, decide nothing
        began = time.perf_counter()
        seconds = began - start - scoring[0]  # training (and Lightning's validation) only
        device = next(net.parameters()).device
        net.eval()
        with torch.no_grad():
            logits = [net(torch.from_numpy(test.x[s : s + 256]).to(device)).float().cpu()
                      for s in range(0, len(test.x), 256)]  # fmt: skip
        net.train()
        f1 = float(f1_score(test.y, torch.cat(logits).argmax(1).numpy(), zero_division=0.0))
        reached.append((epoch, seconds, f1))
        print(f"  epoch {epoch}: {seconds:.1f} s of training, test spam F1 {f1:.4f}", flush=True)
        scoring[0] += time.perf_counter() - began

    result = train_classifier(net, cfg, settings.seed, train, val, on_epoch=on_epoch)
    hit = next(((e, s) for e, s, f1 in reached if f1 >= args.target), None)
    print(f"{args.model.name} fine-tuned (full) on {len(train.x):,} SMS texts, {args.epochs}"
          f" epochs, {resolve_precision(cfg)} on {result.device}:"
          f" {len(train.x) * args.epochs / result.seconds:,.1f} samples/s over the fit;"
          f" test spam F1 {reached[-1][2]:.4f}; time to spam F1 {args.target}:"
          f" {f'{hit[1]:.1f} s (epoch {hit[0]})' if hit else 'not reached'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
