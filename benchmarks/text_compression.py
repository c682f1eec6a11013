"""Compressing the text encoder on SMS spam: int8, ONNX and the half-depth student, side by side.

    python benchmarks/text_compression.py [--epochs 8] [--rounds 5] [--repeats 300]

Trains the BERT-style encoder (width 128, 4 blocks) on the deduplicated SMS Spam
Collection (stratified 80/20 split, seed 42; a tenth of the training part validates),
then builds: torch dynamic int8 (every Linear), the ONNX export (ONNX Runtime fp32) and
its dynamic int8, and the DistilBERT-style student (half the blocks, from the teacher's
blocks 0, 2, ...) distilled for a third of the epochs. Prints each one's spam F1 on the
test split and its batch-1 latency on one thread (median over ``rounds`` rounds of
``repeats`` calls, the variants in a new order each round), with the speed-up over the
torch fp32 teacher. Targets (issue 20): an int8 variant >= 2x faster than fp32 within
0.5 pt of spam F1; the student >= 1.6x faster than its teacher within 1 pt. Reads
../shared/data/sms_spam/sms_spam.csv.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()

    import pandas as pd
    import torch
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split

    from components.compress.distillation import student_spec, teacher_logits
    from components.compress.quantization import (
        dynamic_int8,
        export_onnx,
        onnx_dynamic_int8,
        onnx_runner,
    )
    from components.core import families
    from components.core.config import parse_params
    from components.core.families import DataSpec, NetSpec
    from components.core.kinds.tokenizer import (
        default_max_length,
        encode,
        token_counts,
        train_tokenizer,
    )
    from components.core.logs import setup_logging
    from components.core.splits import Split
    from components.train.data import SplitData
    from components.train.families.transformer import half_depth_start
    from components.train.models import Probabilities, build_net
    from components.train.objectives import Distill, Optimizer
    from components.train.trainer import Fitting, fit, train_classifier

    setup_logging()
    frame = pd.read_csv(SMS, dtype=str, keep_default_na=False).drop_duplicates("text")
    texts, y = frame["text"].to_numpy(), (frame["label"] == "spam").to_numpy().astype(np.int64)
    train, test = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=42)
    train, val = train_test_split(train, test_size=0.1, stratify=y[train], random_state=42)
    tokenizer = train_tokenizer(texts[train], 8000)
    length = default_max_length(token_counts(tokenizer, texts[train]))
    ids = {k: encode(tokenizer, texts[i], length)[0] for k, i in
           (("train", train), ("val", val), ("test", test))}  # fmt: skip
    cfg = parse_params({"train": {"epochs": args.epochs, "batch_size": 32,
                                  "learning_rate": 0.001, "dropout": 0.1}}).train  # fmt: skip
    data = DataSpec("text", (length,), 2, vocab_size=tokenizer.get_vocab_size())
    spec = NetSpec.of("transformer", data, 0.1, width=128, depth=4, heads=4)
    fit_train, fit_val = Split(ids["train"], y[train]), Split(ids["val"], y[val])
    teacher = train_classifier(build_net(spec), cfg, 42, fit_train, fit_val).net
    small = student_spec(spec, parse_params({}).compress.distill)
    student = build_net(small)
    student.load_state_dict(half_depth_start(teacher, small))
    soft = teacher_logits(teacher, ids["train"])
    student_cfg = cfg.model_copy(update={"epochs": max(1, args.epochs // 3)})
    data = SplitData(fit_train, fit_val, student_cfg.batch_size, 42, extra=soft)
    student = fit(Distill(student, Optimizer.of(student_cfg), 4.0, 0.7), data,
                  Fitting(student_cfg, 42)).net  # fmt: skip

    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="mloop-text-compression-"))
    exported = export_onnx(
        teacher, ids["test"], folder / "teacher.onnx", families.get("transformer")
    )
    onnx32 = onnx_runner(exported, threads=1)
    onnx8 = onnx_runner(onnx_dynamic_int8(exported, folder / "teacher-int8.onnx"), threads=1)

    def torch_side(net):
        wrapped = Probabilities(net).eval()

        def predict(x):
            with torch.inference_mode():
                return wrapped(torch.from_numpy(np.asarray(x, np.int64))).numpy()

        return predict

    variants = {
        "fp32 teacher (torch)": torch_side(teacher),
        "dynamic int8 (torch)": torch_side(dynamic_int8(teacher)),
        "onnx fp32": onnx32.predict,
        "onnx int8 (dynamic)": onnx8.predict,
        "half-depth student (torch)": torch_side(student),
    }
    f1 = {name: f1_score(y[test], predict(ids["test"]).argmax(1))
          for name, predict in variants.items()}  # fmt: skip
    one = ids["test"][:1]
    times: dict[str, list[float]] = {name: [] for name in variants}
    rng = np.random.default_rng(0)
    for _ in range(args.rounds):
        for name in rng.permutation(list(variants)):
            predict = variants[name]
            for _ in range(20):
                predict(one)
            start = time.perf_counter()
            for _ in range(args.repeats):
                predict(one)
            times[name].append((time.perf_counter() - start) / args.repeats * 1e3)
    base = statistics.median(times["fp32 teacher (torch)"])
    print(f"\nSMS spam, {len(test)} test messages, {length} tokens at most, batch 1 on one thread,"
          f" median of {args.rounds} rounds x {args.repeats} calls")  # fmt: skip
    print("| variant | spam F1 | vs fp32 (pt) | b1 ms | speed-up |\n|---|---|---|---|---|")
    for name in variants:
        ms = statistics.median(times[name])
        print(f"| {name} | {f1[name]:.4f} | {100 * (f1[name] - f1['fp32 teacher (torch)']):+.1f}"
              f" | {ms:.3f} | {base / ms:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
