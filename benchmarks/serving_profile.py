"""Where a served request's time goes: py-spy on every worker of mloop's server under load.

    pip install py-spy                          # not in the lock: a profiler, not a dependency
    python benchmarks/serving_profile.py [--workspace .] [--rate 1000] [--seconds 10]

Starts the packaged Bento as benchmarks/serving.py does, sends ``--rate``
single-image requests/s, samples each server worker with py-spy at 200 Hz, and
prints the share of the busy samples in each part of the request path (a sample
goes to the innermost frame that names a part), and the service's CPU time per
request. Samples of an idle event loop are left out.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import serving  # benchmarks/serving.py, beside this file

PARTS = {  # part of the request path: what its frames' text contains
    "inference log (SQLite)": ("inference_log.py",),
    "inference (ONNX Runtime, MLflow pyfunc)": ("onnxruntime", "mlflow/", "core/predict.py"),
    "input checks": ("inputs.py",),
    "answer building": ("_answer (components",),
    "OpenTelemetry": ("opentelemetry", "trace/__init__", "asgi/__init__", "sdk/trace"),
    "Prometheus metrics": ("prometheus", "instruments.py"),
    "BentoML dispatch, (de)serialisation, pydantic": (
        "_bentoml_impl",
        "_bentoml_sdk",
        "bentoml/",
        "pydantic",
        "simple_di",
        "inspect.py",
    ),  # fmt: skip
    "mloop's ASGI gate": ("http_gate.py",),
    "Starlette routing and middleware": ("starlette",),
    "uvicorn HTTP parsing and writing": ("uvicorn", "httptools"),
}
IDLE = ("Runner.run (asyncio/runners.py",)  # uvloop waiting for events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=".", help="a workspace `mloop run` packaged")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")

    bento, test = serving.packaged(args.workspace)
    from components.core import process_family
    from components.serve import supervisor, traffic

    with tempfile.TemporaryDirectory() as tmp, supervisor.stop_signals_raise():
        server, url = serving.start_mloop(bento["model_tag"], Path(tmp), 3313)
        try:
            serving.warm_up(url, test)
            workers = [pid for pid in process_family.members(server.family)
                       if "_bentoml_impl.worker" in process_family.describe(pid)]  # fmt: skip
            outputs = [Path(tmp) / f"{pid}.txt" for pid in workers]
            spies = [subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(int(args.seconds)),
                                       "-r", "200", "-f", "raw", "-o", str(out), "--nonblocking"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for pid, out in zip(workers, outputs, strict=True)]  # fmt: skip
            with serving.PeakRss(server) as service:
                result = traffic.run(url, test.x, test.y, args.rate, args.seconds + 2)
            for spying in spies:
                spying.wait()
            report(outputs)
            print(f"\n{result.summary()}\nservice CPU time per request:"
                  f" {1e3 * service.cpu / max(result.ok, 1):.3f} ms")  # fmt: skip
        finally:
            supervisor.stop(server)


def report(outputs: list[Path]) -> None:
    parts: collections.Counter = collections.Counter()
    idle = 0
    for output in outputs:
        for line in output.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            if frames[-1].startswith(IDLE):
                idle += int(count)
                continue
            parts[part(frames)] += int(count)
    busy = sum(parts.values())
    print(f"{busy} busy samples ({idle} idle left out), share of the busy ones:")
    for name, count in parts.most_common():
        print(f"{100 * count / busy:6.1f}%  {name}")


def part(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, marks in PARTS.items():
            if any(mark in frame for mark in marks):
                return name
    return "other (asyncio, the interpreter)"


if __name__ == "__main__":
    sys.exit(main())
