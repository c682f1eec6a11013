"""Image folders at scale: time and peak memory of prepare, validate and a capped epoch.

    python benchmarks/image_folder.py --images 50000 [--folder F] [--epoch-batches 0]
    python benchmarks/image_folder.py --images 1000000 --epoch-batches 200

Writes (once; kept in ``--folder``, default /tmp/mloop-images-N) a folder of N 32x32
RGB JPEGs in 10 class folders, each class a colour pattern under noise, with a
process pool. Then each stage runs in a fresh process (``python -m pipelines.<stage>``
in a workspace pointed at the folder, as ``dvc repro`` runs it), so its wall time and
peak resident memory (the child's ru_maxrss) are its own. ``--epoch-batches K`` also
trains one epoch capped at K batches. Targets (issue 18): 50,000 images prepare and
validate each under 60 s and 1.5 GB; 1,000,000 images prepare, validate and the capped
epoch each under 2 GB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLASSES = 10
SIZE = 32


def _write_chunk(args: tuple[str, int, int, int]) -> int:
    from PIL import Image

    folder, start, end, seed = args
    rng = np.random.default_rng(seed + start)
    patterns = np.random.default_rng(seed).uniform(30, 220, (CLASSES, SIZE, SIZE, 3))
    for i in range(start, end):
        label = i % CLASSES
        pixels = patterns[label] + rng.normal(0, 40, (SIZE, SIZE, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
        image.save(Path(folder) / f"c{label}" / f"{i:07d}.jpg", quality=90)
    return end - start


def write_folder(folder: Path, images: int, seed: int = 0) -> None:
    done = folder / ".complete"
    if done.is_file() and int(done.read_text()) == images:
        print(f"{folder}: {images:,} images already written")
        return
    for c in range(CLASSES):
        (folder / f"c{c}").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    chunks = [(str(folder), s, min(s + 5000, images), seed) for s in range(0, images, 5000)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        written = sum(pool.map(_write_chunk, chunks))
    done.write_text(str(images))
    print(f"{folder}: wrote {written:,} JPEGs in {time.perf_counter() - start:.0f}s")


PEAK = (
    "import resource, runpy, sys\n"
    "sys.argv = [sys.argv[1]]\n"
    "try:\n"
    "    runpy.run_module(sys.argv[0], run_name='__main__')\n"
    "finally:\n"
    "    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "    print(f'PEAK {own} {kids}', file=sys.stderr)\n"
)


def run_stage(ws: Path, stage: str) -> tuple[float, float, float]:
    """``python -m pipelines.<stage>`` in ``ws``: wall seconds, the stage process's peak RSS
    and the largest peak of the processes it started (decoding workers), in MB."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK, f"pipelines.{stage}"], cwd=ws,
                          env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{stage} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    own, kids = done.stderr.rsplit("PEAK ", 1)[1].split()
    return seconds, int(own) / 1024, int(kids) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--folder", default=None)
    parser.add_argument("--epoch-batches", type=int, default=0, help="0: no training")
    args = parser.parse_args()
    import yaml

    folder = Path(args.folder or f"/tmp/mloop-images-{args.images}")
    write_folder(folder, args.images)
    ws = Path(f"/tmp/mloop-images-ws-{args.images}")
    ws.mkdir(exist_ok=True)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"].update(source="images", images={"path": str(folder), "size": [SIZE, SIZE],
                                                 "color": "rgb"})  # fmt: skip
    raw["train"].update(epochs=1, limit_batches=args.epoch_batches or None)
    (ws / "params.yaml").write_text(yaml.safe_dump(raw))
    stages = ["prepare", "validate"] + (["train"] if args.epoch_batches else [])
    print(f"\n{args.images:,} images of {SIZE}x{SIZE} RGB; each stage in its own process")
    print("| stage | seconds | peak RSS MB | largest worker's peak RSS MB |\n|---|---|---|---|")
    for stage in stages:
        seconds, own, kids = run_stage(ws, stage)
        print(f"| {stage} | {seconds:.1f} | {own:,.0f} | {kids:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
