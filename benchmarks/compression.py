"""Compression variants of the digits CNN and of a LeNet-300-100-style MLP, side by side.

    python benchmarks/compression.py [--rounds 7] [--repeats 200] [--han-seeds 7] [--kd-seeds 3]
        [--kd-data digits noisy-images] [--kd-student WIDTH,HIDDEN] [--models cnn mlp]

Trains each network on the built-in digits with the default params (the MLP with
hidden layers 300 and 100, and 90% of its weights pruned in 3 steps with 30 epochs of
fine-tuning, dropout scaled down, after each: Han et al. 2015), builds every variant
the compress stage builds, then times them on the CPU at batch 1 and 64. Each
round times every variant once, in turn, so machine noise hits all alike; the
table shows medians over the rounds and ratios to fp32 (torch), and the choice
uses those medians. The last lines check the targets: the shipped variant at
least 4x smaller and 2x faster at batch 1.

The Han et al. check repeats the MLP's 90% pruning over several seeds (each its
own split, training and pruning): on 360 test images one image is 0.28 points, so
a single seed cannot tell 0.3 from 0.8; the median drop is the figure.

The distillation check does the same for the CNN's student (``compress.distill``, at
most a quarter of the teacher's parameters): per seed a teacher, its distilled
student, the same student trained without it (same start, seed and epochs) and the
distilled student in ONNX Runtime int8; targets: the student's median within 1
point of the teacher's, above the baseline's, and in int8 within the accuracy
budget. It runs on the digits and on noisy pattern images (``NOISY_IMAGES``), whose
classes overlap: there a teacher's probabilities carry more than the labels, on
the digits (a teacher ~100% sure of every training image) next to nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import statistics
import tempfile
from pathlib import Path

# Ten classes of 8x8 pattern images under heavy pixel noise (std 150 of 255): the classes
# overlap, so a teacher's probabilities say more than the labels do. 1,200 test images.
NOISY_IMAGES = {
    "data.source": "synthetic",
    "data.synthetic.kind": "images",
    "data.synthetic.samples": 6000,
    "data.synthetic.classes": 10,
    "data.synthetic.noise": 150.0,
}
KD_DATA = {"digits": {}, "noisy-images": NOISY_IMAGES}
MLP_300_100 = {
    "train.model": "mlp",
    "train.mlp.layers": [300, 100],
    "compress.prune_amount": 0.9,
    "compress.prune_steps": 3,
    "compress.finetune_epochs": 30,
}


def trained(overrides: dict, root: Path, seed: int | None = None):
    """Params, workspace, test split and the network trained on the built-in digits."""
    import torch

    from components.core.config import load_params
    from components.core.paths import Workspace
    from components.core.splits import load_meta, load_split
    from components.prepare.stage import prepare
    from components.train.models import build_net
    from components.train.sweep import with_values
    from components.train.trainer import net_spec, train_classifier

    repo = Path(__file__).resolve().parent.parent
    # The stage's own timing is replaced by the alternating rounds below: keep it short.
    params = with_values(load_params(repo / "params.yaml"),
                         {**overrides, "compress.latency_repeats": 5})  # fmt: skip
    if seed is not None:
        params = params.model_copy(update={"seed": seed})
    ws = Workspace(root)
    prepare(params.data, params.seed, ws.prepared)
    meta = load_meta(ws.prepared)
    train, val, test = (load_split(ws.prepared, s) for s in ("train", "val", "test"))
    torch.manual_seed(params.seed)
    spec = net_spec(params, meta, train)
    net = build_net(spec)
    with contextlib.redirect_stdout(io.StringIO()):  # epoch lines
        train_classifier(net, params.train, params.seed, train, val)
    return params, ws, test, net.cpu().eval(), spec


def accuracy(predict, split) -> float:
    """Test accuracy of ``predict`` (a batch of inputs -> class scores) on ``split``."""
    return float((predict(split.x).argmax(1) == split.y).mean())


def han_check(seeds: int, root: Path) -> None:
    """90% magnitude pruning of the 300-100 MLP, fine-tuned, over ``seeds`` seeds."""
    from components.compress import pruning
    from components.compress.variants import stage_tuner
    from components.core.predict import torch_predictor

    print(f"\nHan et al. check: 300-100 MLP, 90% of weights pruned in 3 steps, {seeds} seeds")
    print(f"{'seed':>6}{'fp32':>9}{'pruned':>9}{'drop pt':>9}{'sparsity':>10}")
    drops = []
    for seed in range(seeds):
        params, ws, test, net, _ = trained(MLP_300_100, root / f"han-{seed}", seed)
        cfg = params.compress
        with contextlib.redirect_stdout(io.StringIO()):
            pruned = pruning.magnitude_prune(net, cfg.prune_amount, stage_tuner(params, ws),
                                             cfg.prune_steps)  # fmt: skip
        base, after = accuracy(torch_predictor(net), test), accuracy(torch_predictor(pruned), test)
        drops.append((base - after) * 100)
        print(f"{seed:>6}{base:>9.4f}{after:>9.4f}{drops[-1]:>9.2f}"
              f"{pruning.sparsity(pruned):>10.3f}")  # fmt: skip
    median = statistics.median(drops)
    verdict = "met" if median <= 0.5 else "NOT met"
    print(f"median drop {median:.2f} pt (worst {max(drops):.2f}) -> target <= 0.5 pt {verdict}")


def distill_check(seeds: int, root: Path, data: str, overrides: dict) -> None:
    """The CNN's distilled student against the teacher and the no-teacher baseline,
    and the distilled student in int8 (ONNX Runtime) against the accuracy budget."""
    overrides = {"compress.distill.epochs": 40, **overrides}  # the README's figures: 40 epochs
    from components.compress import quantization
    from components.compress.distillation import train_students
    from components.compress.pruning import parameter_count
    from components.core import families
    from components.core.predict import torch_predictor
    from components.core.splits import load_split

    print(f"\ndistillation check: {data} CNN teacher, {seeds} seeds")
    rows = []
    for seed in range(seeds):
        params, ws, test, net, spec = trained(
            {"train.model": "cnn", **KD_DATA[data], **overrides}, root / f"kd-{data}-{seed}", seed
        )
        train, val = load_split(ws.prepared, "train"), load_split(ws.prepared, "val")
        with contextlib.redirect_stdout(io.StringIO()):
            students = train_students(net, spec, params, train, val)
        calibration = train.x[: params.compress.calibration_samples].astype("float32")
        int8 = quantization.net_to_onnx_int8(
            students.distilled, calibration, ws.root / "s8.onnx", families.get(students.spec.family)
        )
        rows.append((accuracy(torch_predictor(net), test),
                     accuracy(torch_predictor(students.distilled), test),
                     accuracy(torch_predictor(students.baseline), test),
                     accuracy(quantization.onnx_runner(int8).predict, test)))  # fmt: skip
        if seed == 0:
            cfg, budget = params.compress.distill, params.compress.max_accuracy_drop * 100
            share = parameter_count(students.distilled) / parameter_count(net)
            teacher_kib = quantization.export_onnx(
                net, calibration, ws.root / "t.onnx", families.get(spec.family)
            )
            student = students.spec
            print(f"{len(test)} test images; student: {student.family} {student.options},"
                  f" {parameter_count(students.distilled):,} parameters"
                  f" ({share:.1%} of the teacher's {parameter_count(net):,}); T {cfg.temperature},"
                  f" alpha {cfg.alpha}, {cfg.epochs} epochs; int8 ONNX"
                  f" {int8.stat().st_size / 1024:.1f} KiB, teacher fp32 ONNX"
                  f" {teacher_kib.stat().st_size / 1024:.1f} KiB")  # fmt: skip
            print(f"{'seed':>6}{'teacher':>9}{'distilled':>11}{'baseline':>10}{'kd gain pt':>12}"
                  f"{'int8':>9}{'int8 drop pt':>14}")  # fmt: skip
        t, d, b, q = rows[-1]
        print(f"{seed:>6}{t:>9.4f}{d:>11.4f}{b:>10.4f}{(d - b) * 100:>12.2f}{q:>9.4f}"
              f"{(t - q) * 100:>14.2f}")  # fmt: skip
    t, d, b, q = (statistics.median(column) for column in zip(*rows, strict=True))
    gains = [(r[1] - r[2]) * 100 for r in rows]
    drops = [(r[0] - r[3]) * 100 for r in rows]
    gap, gain, drop = (t - d) * 100, statistics.median(gains), statistics.median(drops)
    print(f"median: teacher {t:.4f}, distilled {d:.4f}, baseline {b:.4f}, distilled int8 {q:.4f}")
    print(
        f"distilled within {gap:.2f} pt of the teacher -> target (<= 1 pt)"
        f" {'met' if gap <= 1 else 'NOT met'}; median paired gain over the baseline"
        f" {gain:+.2f} pt ({sum(g > 0 for g in gains)} of {len(gains)} seeds above, "
        f"{sum(g < 0 for g in gains)} below) -> target (> 0) {'met' if gain > 0 else 'NOT met'}"
    )
    print(f"distilled int8: median drop {drop:.2f} pt, worst {max(drops):.2f} pt -> within the"
          f" {budget:.1f} pt budget {'met' if drop <= budget else 'NOT met'}")  # fmt: skip


def run_model(label: str, overrides: dict, args, root: Path) -> None:
    import torch

    from components.compress.variants import build_variants, choose, measure
    from components.core.splits import load_meta
    from components.core.timing import latency_ms

    params, ws, test, net, spec = trained(overrides, root / label)
    meta = load_meta(ws.prepared)
    with contextlib.redirect_stdout(io.StringIO()):
        built = build_variants(net, spec, params, ws, ws.compressed_dir)
    variants = {v.name: v for v in measure(built, params.compress, test.x, test.y,
                                           meta["classes"])}  # fmt: skip
    x = {b: test.x[:b].astype("float32") for b in (1, 64)}
    timings: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for batch in (1, 64):
            for name, (runner, *_) in built.items():  # the variants take turns
                p50 = latency_ms(runner.predict, x[batch], args.repeats)[0]
                timings.setdefault((name, batch), []).append(p50)
    med = {key: statistics.median(values) for key, values in timings.items()}
    variants = {
        name: dataclasses.replace(v, speedup=med[("fp32", 1)] / med[(name, 1)])
        for name, v in variants.items()
    }  # the choice sees the rounds' medians
    base = variants["fp32"]
    print(f"\n{label}: {base.parameters:,} parameters, test accuracy {base.accuracy:.4f},"
          f" budget {params.compress.max_accuracy_drop * 100:.1f} pt,"
          f" {args.rounds} rounds x {args.repeats} calls, torch threads"
          f" {torch.get_num_threads()}")  # fmt: skip
    print(f"{'variant':<24}{'accuracy':>9}{'drop pt':>8}{'KiB':>8}{'smaller':>8}{'sparsity':>9}"
          f"{'b1 ms':>8}{'b64 ms':>8}{'b1 x':>7}{'b64 x':>7}  budget")  # fmt: skip
    for name, v in variants.items():
        b1, b64 = med[(name, 1)], med[(name, 64)]
        verdict = "ok" if v.within_budget else "over"
        print(f"{name:<24}{v.accuracy:>9.4f}{v.accuracy_drop * 100:>8.2f}"
              f"{v.size_bytes / 1024:>8.1f}{base.size_bytes / v.size_bytes:>7.1f}x"
              f"{v.sparsity:>9.2f}{b1:>8.3f}{b64:>8.3f}{v.speedup:>6.2f}x"
              f"{med[('fp32', 64)] / b64:>6.2f}x  {verdict}")  # fmt: skip
    best = choose(list(variants.values()))
    if best is None:
        print("no variant beats fp32 within the budget")
        return
    smaller = base.size_bytes / best.size_bytes
    faster = best.speedup
    verdict = "met" if smaller >= 4 and faster >= 2 else "NOT met"
    print(
        f"shipped: {best.name}: {smaller:.1f}x smaller, {faster:.2f}x faster at batch 1,"
        f" drop {best.accuracy_drop * 100:.2f} pt -> target (4x, 2x, <=0.5 pt) {verdict}"
    )
    for name in ("onnx-int8", "structured+onnx-int8", "distilled", "distilled+onnx-int8"):
        if name in variants and variants[name] is not best:
            v = variants[name]
            print(f"  {name}: {base.size_bytes / v.size_bytes:.1f}x smaller,"
                  f" {v.speedup:.2f}x faster, drop"
                  f" {v.accuracy_drop * 100:.2f} pt")  # fmt: skip
    if "pruned" in variants:
        v = variants["pruned"]
        print(f"  pruned ({v.sparsity:.0%} of weights zero, fine-tuned):"
              f" drop {v.accuracy_drop * 100:.2f} pt")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=200, help="calls per timing")
    parser.add_argument("--han-seeds", type=int, default=7, help="seeds of the Han check")
    parser.add_argument("--kd-seeds", type=int, default=3, help="seeds of the distillation check")
    parser.add_argument(
        "--kd-student",
        metavar="WIDTH,HIDDEN",
        help="the CNN student's size in the check (default: params.yaml)",
    )
    parser.add_argument("--kd-data", nargs="*", choices=list(KD_DATA), default=list(KD_DATA),
                        help="data sets of the distillation check")  # fmt: skip
    parser.add_argument(
        "--models",
        nargs="*",
        choices=["cnn", "mlp"],
        default=["cnn", "mlp"],
        help="variant tables to build (none: only the checks)",
    )
    args = parser.parse_args()
    student = {}
    if args.kd_student:
        width, hidden = (int(v) for v in args.kd_student.split(","))
        student = {"compress.distill.width": width, "compress.distill.hidden": hidden}

    from components.core.logs import setup_logging

    setup_logging()
    with tempfile.TemporaryDirectory() as tmp:
        if "cnn" in args.models:
            run_model("digits CNN", {"train.model": "cnn"}, args, Path(tmp))
        if "mlp" in args.models:
            run_model("digits MLP 300-100 (Han et al.: 90% pruned)", MLP_300_100, args, Path(tmp))
        for data in args.kd_data if args.kd_seeds else ():
            distill_check(args.kd_seeds, Path(tmp), data, student)
        if args.han_seeds:
            han_check(args.han_seeds, Path(tmp))


if __name__ == "__main__":
    main()
