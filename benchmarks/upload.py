"""Image files over HTTP: uploaded 32x32 PNGs against the same images sent as pixel JSON.

    python benchmarks/upload.py [--workspace /tmp/mloop-upload] [--rates 200,400]
                                [--seconds 10] [--rounds 5]

Makes the workspace once (2,000 PNGs of 32x32 RGB in 10 class folders, then
``mloop run`` with 3 epochs), starts its Bento as ``mloop serve`` does (inference log
on), and sends open-loop traffic from this process (``components.serve.traffic``, on
the same cores) at each rate: one PNG per request to /predict_files (multipart), and,
as the peer, the same images already decoded, as pixel values in JSON to /predict;
the two sides alternate which goes first every round. Prints p50/p99 and errors per
side and rate (medians over rounds). Target (issue 18): uploaded 32x32 PNGs at 200
requests/s or more with p99 under 100 ms and no error.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import serving  # benchmarks/serving.py, beside this file

REPO = Path(__file__).resolve().parent.parent
SIZE, CLASSES, PER_CLASS = 32, 10, 200


def make_workspace(ws: Path) -> None:
    import yaml
    from PIL import Image

    if (ws / "reports" / "bento.json").is_file():
        return
    rng = np.random.default_rng(0)
    patterns = rng.uniform(30, 220, (CLASSES, SIZE, SIZE, 3))
    for k in range(CLASSES):
        (ws / "photos" / f"c{k}").mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            pixels = np.clip(patterns[k] + rng.normal(0, 40, (SIZE, SIZE, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(ws / "photos" / f"c{k}" / f"{i}.png")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"].update(source="images",
                       images={"path": "photos", "size": [SIZE, SIZE], "color": "rgb"})  # fmt: skip
    raw["train"]["epochs"] = 3
    raw["compress"]["variants"] = ["onnx", "onnx-int8"]
    raw["register"]["model_name"] = "upload-bench"
    raw["package"]["service_name"] = "upload_bench"
    (ws / "params.yaml").write_text(yaml.safe_dump(raw))
    subprocess.run([sys.executable, "-m", "flows.cli", "--workspace", str(ws), "run"],
                   cwd=REPO, check=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="/tmp/mloop-upload")
    parser.add_argument("--rates", default="200,400")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    ws = Path(args.workspace).resolve()
    make_workspace(ws)

    from components.core.kinds.decode import decode
    from components.serve import supervisor, traffic

    bento, _ = serving.packaged(str(ws))
    files, labels = traffic.folder_files(ws / "photos", limit=1000)
    pixels = np.stack([decode(data, (SIZE, SIZE), "rgb") for _, data in files.files])
    sides = {"files": files, "pixels": pixels.astype(np.float32)}
    rates = [float(r) for r in args.rates.split(",")]
    results: dict[tuple[str, float], list] = {}
    with tempfile.TemporaryDirectory() as tmp, supervisor.stop_signals_raise():
        server, url = serving.start_mloop(bento["model_tag"], Path(tmp), 3317)
        try:
            traffic.run(url, files, labels, 50, 2.0)  # warm-up
            for r in range(args.rounds):
                for rate in rates:
                    order = list(sides) if r % 2 == 0 else list(sides)[::-1]
                    for side in order:
                        result = traffic.run(url, sides[side], labels, rate, args.seconds)
                        results.setdefault((side, rate), []).append(result)
        finally:
            supervisor.stop(server)
    print(f"\n{len(files)} PNG files of {SIZE}x{SIZE} RGB; {args.rounds} rounds of"
          f" {args.seconds:g} s per side and rate (medians)")  # fmt: skip
    print("| side | rate/s | answered/s | p50 ms | p99 ms | errors (all rounds) |")
    print("|---|---|---|---|---|---|")
    for (side, rate), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        med = statistics.median
        errors = sum(sum(r.errors.values()) + r.skipped for r in runs)
        print(f"| {side} | {rate:g} | {med(r.throughput for r in runs):.0f}"
              f" | {med(r.latency_ms['p50'] for r in runs):.1f}"
              f" | {med(r.latency_ms['p99'] for r in runs):.1f} | {errors} |")  # fmt: skip


if __name__ == "__main__":
    main()
