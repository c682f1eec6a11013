"""Training throughput: mloop's Lightning path against a plain PyTorch loop, side by side.

    python benchmarks/train_throughput.py                       # digits CNN, this machine
    python benchmarks/train_throughput.py --model resnet --image-size 32 --channels 3 \\
        --samples 50000 --batch 512 --precision bf16-mixed      # the GPU check

Both sides train the same network (same init, data, batch size, optimizer,
schedule, precision and compile setting) for the same epochs. Rounds alternate
the sides and the table shows medians over the rounds, the ratio mloop/plain,
and on a GPU the achieved TFLOP/s (forward + backward, counted by torch).
Then the default digits config is trained once more to report time-to-accuracy
(``--min-accuracy``: exit 1 when its final test accuracy stays below it).

Runs with only torch, lightning, numpy, pandas and scikit-learn installed (a bare
GPU machine; see ``benchmarks/gpu_check.sh``): the settings then come from
``params.yaml`` as written, without pydantic's validation.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def load_settings():
    """``params.yaml``: validated where pydantic is installed, as written where it is not."""
    try:
        from components.core.config import load_params
    except ModuleNotFoundError:  # a bare GPU machine
        import yaml

        from components.core import families  # the standard library only

        raw = yaml.safe_load((ROOT / "params.yaml").read_text())
        sections = {"gate": raw["validate"], "train": raw["train"], "data": raw["data"]}
        settings = SimpleNamespace(seed=raw["seed"], **{
            key: SimpleNamespace(**values) for key, values in sections.items()
        })  # fmt: skip
        # what TrainConfig.net gives: the family's section of params.yaml, as its config
        settings.train.net = lambda name: families.get(name).options(raw["train"].get(name))
        return settings
    return load_params(ROOT / "params.yaml")


def with_train(train, **overrides):
    """A train section with ``overrides`` applied."""
    if hasattr(train, "model_copy"):
        return train.model_copy(update=overrides)
    return SimpleNamespace(**{**vars(train), **overrides})


def plain_loop(net, cfg, x, y, epochs: int, device, seed: int, val=None) -> float:
    """The hand-written loop: same batching, optimizer, schedule, precision and validation."""
    import torch
    import torch.nn.functional as F

    net = net.to(device).train()
    model = torch.compile(net) if cfg.compile else net
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps = epochs * -(-len(y) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.learning_rate, total_steps=steps)
    xs, ys = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    bf16 = cfg.precision == "bf16-mixed"
    _sync(device)
    start = time.perf_counter()
    for epoch in range(epochs):
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(len(ys), generator=g).to(device)
        for i in range(0, len(ys), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(xs[idx]), ys[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.gradient_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.gradient_clip)
            opt.step()
            sched.step()
        if val is not None:  # mloop validates every epoch; so does the plain loop
            net.eval()
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                vx, vy = torch.from_numpy(val.x).to(device), torch.from_numpy(val.y).to(device)
                (model(vx).argmax(1) == vy).float().mean().item()
            net.train()
    _sync(device)
    return time.perf_counter() - start


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def flops_per_sample(net, x: np.ndarray, device) -> float:
    """Forward + backward FLOPs of one sample, as torch's FLOP counter sees them."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    net = copy.deepcopy(net).to(device)
    batch = torch.from_numpy(x[:8]).to(device)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(net(batch), torch.zeros(8, dtype=torch.long, device=device)).backward()
    return counter.get_total_flops() / 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn", choices=["cnn", "resnet", "mlp"])
    parser.add_argument("--samples", type=int, default=0, help="synthetic images (0: digits)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=1, choices=[1, 3])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument(
        "--min-accuracy",
        type=float,
        default=0.0,
        help="time-to-accuracy run: exit 1 below this final test accuracy",
    )
    args = parser.parse_args()

    import torch

    from components.core.families import DataSpec, NetSpec
    from components.core.logs import setup_logging
    from components.core.splits import Split
    from components.train.models import build_net
    from components.train.trainer import resolve_precision, train_classifier

    setup_logging()
    rng = np.random.default_rng(0)
    if args.samples:
        shape = (args.image_size, args.image_size)
        shape = shape if args.channels == 1 else (args.channels, *shape)
        x = rng.uniform(0, 255, size=(args.samples, *shape)).astype(np.float32)
        y = rng.integers(0, 10, size=args.samples)
        pixel_max = 255.0
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x, y, shape, pixel_max = digits.images.astype(np.float32), digits.target, (8, 8), 16.0
    y = y.astype(np.int64)
    cfg = with_train(
        load_settings().train, model=args.model, epochs=args.epochs, batch_size=args.batch,
        precision=args.precision, compile=args.compile, dropout=0.0,
    )  # fmt: skip
    cfg = with_train(cfg, precision=resolve_precision(cfg))
    spec = NetSpec.of(args.model, DataSpec("image", tuple(shape), 10, pixel_max=pixel_max), 0.0)
    torch.manual_seed(0)
    base = build_net(spec)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    split = Split(x=x, y=y)
    tiny = Split(x=x[:512], y=y[:512])  # validation is not what is measured

    times = {"mloop (Lightning)": [], "plain PyTorch": []}
    for _ in range(args.rounds):  # alternate the sides within every round
        result = train_classifier(copy.deepcopy(base), cfg, 0, split, tiny)
        times["mloop (Lightning)"].append(result.seconds)
        times["plain PyTorch"].append(
            plain_loop(copy.deepcopy(base), cfg, x, y, cfg.epochs, device, 0, tiny)
        )

    name = (
        torch.cuda.get_device_name() if device.type == "cuda" else f"CPU x{torch.get_num_threads()}"
    )
    flops = flops_per_sample(base, x, device) if device.type == "cuda" else None
    setup = f"batch {args.batch}, {cfg.precision}, compile={cfg.compile}"
    print(f"\n{args.model} on {len(y):,} x {shape}, {setup}, {args.epochs} epochs x {args.rounds}"
          f" rounds, {name}")  # fmt: skip
    print(f"{'path':<20}{'median s':>10}{'samples/s':>12}" + ("   TFLOP/s" if flops else ""))
    rates = {}
    for path, seconds in times.items():
        median = statistics.median(seconds)
        rates[path] = args.epochs * len(y) / median
        tflops = f"{rates[path] * flops / 1e12:>10.1f}" if flops else ""
        print(f"{path:<20}{median:>10.2f}{rates[path]:>12,.0f}{tflops}")
    ratio = rates["mloop (Lightning)"] / rates["plain PyTorch"]
    print(f"ratio mloop/plain: {ratio:.3f}  (runs: " + ", ".join(
        f"{p}/{q}" for p, q in zip(*[[f"{s:.2f}" for s in v] for v in times.values()], strict=True)
    ) + ")")  # fmt: skip

    if not args.samples:
        accuracy = time_to_accuracy()
        if accuracy < args.min_accuracy:
            sys.exit(f"final test accuracy {accuracy:.4f} is below {args.min_accuracy}")


def time_to_accuracy() -> float:
    """The default digits config: wall time until test accuracy first reaches 0.98."""
    from sklearn.datasets import load_digits

    from components.core.predict import torch_predictor
    from components.core.splits import Split, split_indices
    from components.evaluate.metrics import score
    from components.train.models import build_net
    from components.train.trainer import net_spec, train_classifier

    settings = load_settings()
    digits = load_digits()
    x, y = digits.images.astype(np.float32), digits.target.astype(np.int64)
    idx = split_indices(y, settings.data, settings.seed)  # the prepare stage's split
    train, val, test = (Split(x=x[idx[s]], y=y[idx[s]]) for s in ("train", "val", "test"))
    meta = {"kind": "image", "input_shape": [8, 8], "classes": list(range(10)), "pixel_max": 16}
    spec = net_spec(settings, meta, train)
    reached: list[tuple[int, float, float]] = []
    start = time.perf_counter()
    net = build_net(spec)

    def check(epoch, _metrics):
        acc = score(test.y, torch_predictor(net.eval())(test.x), meta["classes"]).accuracy
        net.train()
        reached.append((epoch, time.perf_counter() - start, acc))

    train_classifier(net, settings.train, settings.seed, train, val, on_epoch=check)
    first = next(((e, t, a) for e, t, a in reached if a >= 0.98), None)
    final = reached[-1]
    print(f"\ntime-to-accuracy (default digits config, {settings.train.epochs} epochs):")
    if first:
        print(f"  test accuracy {first[2]:.4f} >= 0.98 at epoch {first[0]}, {first[1]:.1f} s")
    print(f"  final: test accuracy {final[2]:.4f} after {final[1]:.1f} s")
    return final[2]


if __name__ == "__main__":
    main()
