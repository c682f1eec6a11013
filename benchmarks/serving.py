"""mloop's served Bento against a bare Starlette server on the same model, side by side.

    mloop run                                   # once: a packaged Bento in the workspace
    python benchmarks/serving.py [--workspace .] [--rounds 5] [--seconds 5]

Starts the packaged Bento with ``bentoml serve`` exactly as ``mloop serve`` does
(its defaults, the durable inference log on) and the bare peer of
``benchmarks/serving_peer.py`` (Starlette on uvicorn, 2 workers, the same
``model.onnx`` through ONNX Runtime, no log), then sends open-loop traffic from
this process (``components.serve.traffic``, on the same cores), alternating which
side goes first at every step, for ``--rounds`` rounds:

1. fixed rates (250 and 1,000 single-image requests/s, ``--fixed-seconds`` each):
   p50/p99, the service's peak resident memory and its CPU time per request (server
   and workers, from /proc: steadier than any rate on a shared machine);
2. rising ladders of single-image requests and of 32-image batches: each side's
   max sustainable rate, the highest rate of a round answered in full with p99
   under 100 ms and no error (median over rounds), and the ratio of the two;
3. overload: mloop at twice its max sustainable rate (at most 6,000/s, about what
   the load generator can send here), while /readyz and /livez are probed every
   50 ms: how many requests were shed (503 with Retry-After), how many timed out,
   and the probes' slowest answer.

Uploaded image files are not served yet (issue 18), so they have no ladder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

FIXED = (250, 1000)
LADDERS = {  # images per request: rates asked, per second
    1: (1000, 2000, 2500, 3000, 3500, 4000, 5000, 6000),
    32: (400, 800, 1200, 1600, 2000, 2500, 3000),
}
SUSTAINED_P99_MS = 100.0
SIDES = ("mloop", "peer")
REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=".", help="a workspace `mloop run` packaged")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="per ladder step and side")
    parser.add_argument("--fixed-seconds", type=float, default=10.0, help="per fixed rate")
    parser.add_argument("--batches", default="1,32", help="ladders to climb (1, 32)")
    args = parser.parse_args()

    bento, test = packaged(args.workspace)
    from components.serve import supervisor

    with tempfile.TemporaryDirectory() as tmp, supervisor.stop_signals_raise():
        servers = {}
        try:
            servers["mloop"] = start_mloop(bento["model_tag"], Path(tmp), 3311)
            servers["peer"] = start_peer(onnx_file(bento["model_tag"]), Path(tmp), 3312)
            for _, url in servers.values():
                warm_up(url, test)
            print(f"mloop serving {bento['model_tag']} (inference log on) vs bare Starlette on"
                  f" uvicorn (2 workers, same model.onnx, no log); {args.rounds} rounds,"
                  f" alternating; load generator on the same {os.cpu_count()} cores")  # fmt: skip
            fixed = climb(servers, test, 1, FIXED, args.fixed_seconds, args.rounds)
            table(fixed, f"fixed rates, single images, {args.fixed_seconds:g} s each")
            best = {}
            for batch in (int(b) for b in args.batches.split(",")):
                runs = climb(servers, test, batch, LADDERS[batch], args.seconds, args.rounds)
                table(runs, f"{batch}-image requests, {args.seconds:g} s a step")
                best[batch] = sustainable(runs)
            if 1 in best:
                overload(servers["mloop"], test, min(2 * best[1]["mloop"], 6000), args.seconds)
            targets(fixed, best.get(1))
        finally:
            for server, _ in servers.values():
                supervisor.stop(server)


def packaged(workspace: str):
    """The workspace's package record and test split, with the environment pointed at the
    workspace and a guard that stops the servers started from here even if this process is
    SIGKILLed."""
    from components.core.paths import Workspace, configure_environment

    ws = Workspace(Path(workspace).resolve())
    configure_environment(ws)
    from components.core import process_family
    from components.core.records import read_json
    from components.core.splits import load_split

    process_family.guard()
    return read_json(ws.report("bento.json"), "package"), load_split(ws.prepared, "test")


def start_mloop(model_tag: str, tmp: Path, port: int):
    """``bentoml serve`` of this checkout's service, as ``mloop serve`` starts it."""
    from components.serve import supervisor

    os.environ.update(MLOOP_BENTO_MODEL=model_tag, MLOOP_INFERENCE_LOG=str(tmp / "log.sqlite"))
    os.chdir(REPO)  # where components/package/service.py is
    log = tmp / "mloop.out"
    server = supervisor.start("components.package.service:Classifier", "127.0.0.1", port, log)
    supervisor.wait_ready("127.0.0.1", port, server, log_file=log)
    return server, f"http://127.0.0.1:{port}"


def start_peer(onnx: Path, tmp: Path, port: int):
    from components.serve import supervisor

    log = tmp / "peer.out"
    command = [sys.executable, "-m", "uvicorn", "serving_peer:app", "--app-dir",
               str(REPO / "benchmarks"), "--workers", "2", "--host", "127.0.0.1", "--port",
               str(port), "--no-access-log", "--log-level", "warning"]  # fmt: skip
    from components.core.settings import settings

    env = {**os.environ, "PEER_ONNX": str(onnx), "PEER_ORT_THREADS": str(settings().ort_threads)}
    server = supervisor.start_process(command, log, env=env)
    supervisor.wait_http(f"http://127.0.0.1:{port}/readyz", server, log_file=log)
    return server, f"http://127.0.0.1:{port}"


def onnx_file(model_tag: str) -> Path:
    import bentoml

    path = Path(bentoml.models.get(model_tag).path) / "mlflow_model" / "model.onnx"
    if not path.is_file():
        raise SystemExit(f"the served model {model_tag} is not ONNX: the peer needs model.onnx")
    return path


def warm_up(url: str, test) -> None:
    from components.serve import traffic

    traffic.run(url, test.x, test.y, 200, 3)


class Service(NamedTuple):
    rss_mb: float  # peak resident memory of the server and its workers
    cpu_ms: float  # their CPU time per request answered


class PeakRss:
    """Peak resident memory (MB) and CPU seconds of a server's process family while the
    block runs."""

    def __init__(self, server) -> None:
        self.family, self.peak, self._done = server.family, 0.0, threading.Event()

    def __enter__(self):
        self._cpu = cpu_seconds(self.family)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        from components.core import process_family

        while not self._done.wait(0.25):
            self.peak = max(self.peak, process_family.rss_mb(self.family))

    def __exit__(self, *exc) -> None:
        self.cpu = cpu_seconds(self.family) - self._cpu
        self._done.set()
        self._thread.join()


def cpu_seconds(family: str) -> float:
    """User and system CPU time of a process family's live processes."""
    from components.core import process_family

    total = 0
    for pid in process_family.members(family):
        stat = process_family.stat(pid)
        total += stat.cpu_ticks if stat else 0
    return total / os.sysconf("SC_CLK_TCK")


def climb(servers, test, batch: int, rates, seconds: float, rounds: int) -> dict:
    """{side: {rate: [(TrafficResult, Service) per round]}}, sides alternating."""
    from components.serve import traffic

    runs = {side: {rate: [] for rate in rates} for side in SIDES}
    for r in range(rounds):
        for k, rate in enumerate(rates):
            for side in SIDES if (r + k) % 2 == 0 else reversed(SIDES):
                server, url = servers[side]
                with PeakRss(server) as rss:
                    result = traffic.run(url, test.x, test.y, rate, seconds, batch=batch)
                handled = max(result.ok + sum(result.errors.values()), 1)
                runs[side][rate].append((result, Service(rss.peak, 1e3 * rss.cpu / handled)))
                time.sleep(0.5)  # let a backlog drain before the other side
        print(f"  {batch}-image requests at {rates}/s: round {r + 1}/{rounds}", file=sys.stderr)
    return runs


def sustained(result) -> bool:
    """Every request asked for was sent and answered 200, with p99 under the limit."""
    answered_all = not result.skipped and result.ok == result.sent
    return answered_all and not result.errors and result.latency_ms["p99"] < SUSTAINED_P99_MS


def median(runs: list, value) -> float:
    return statistics.median(value(result, service) for result, service in runs)


def table(runs: dict, title: str) -> None:
    print(f"\n{title} (medians of rounds; errors: all rounds; RSS: the peak; CPU: the"
          " service's CPU time per request)")  # fmt: skip
    head = f"{'answered/s':>11}{'p50 ms':>8}{'p99 ms':>9}{'errors':>8}{'RSS MB':>8}{'CPU ms':>8}"
    print(f"{'rate/s':>7} | {'mloop':^52} | {'peer':^52}")
    print(f"{'':>7} | {head} | {head}")
    for rate in next(iter(runs.values())):
        cells = []
        for side in SIDES:
            results = runs[side][rate]
            errors = sum(sum(t.errors.values()) + t.skipped for t, _ in results)
            cells.append(f"{median(results, lambda t, m: t.throughput):>11.0f}"
                         f"{median(results, lambda t, m: t.latency_ms['p50']):>8.1f}"
                         f"{median(results, lambda t, m: t.latency_ms['p99']):>9.1f}"
                         f"{errors:>8}{max(m.rss_mb for _, m in results):>8.0f}"
                         f"{median(results, lambda t, m: m.cpu_ms):>8.3f}")  # fmt: skip
        print(f"{rate:>7} | " + " | ".join(cells))


def sustainable(runs: dict) -> dict:
    best = {}
    for side in SIDES:
        rates = list(runs[side])
        rounds = len(runs[side][rates[0]])
        per_round = [
            max((rate for rate in rates if sustained(runs[side][rate][r][0])), default=0)
            for r in range(rounds)
        ]
        best[side] = statistics.median(per_round)
        top = " (the top of the ladder)" if best[side] == rates[-1] else ""
        print(f"{side}: max sustainable rate (p99 < {SUSTAINED_P99_MS:g} ms, 0 errors)"
              f" {best[side]:g}/s{top}; per round {per_round}")  # fmt: skip
    if best["peer"]:
        print(f"mloop / peer: {best['mloop'] / best['peer']:.2f}x")
    return best


def overload(mloop, test, rate: float, seconds: float) -> None:
    """Send ``rate``/s to mloop while probing /readyz and /livez every 50 ms."""
    from components.serve import traffic

    server, url = mloop
    probes: list[float] = []
    failed: list[str] = []
    done = threading.Event()

    def probe() -> None:
        while not done.wait(0.05):
            for path in ("/readyz", "/livez"):
                start = time.perf_counter()
                try:
                    with urllib.request.urlopen(url + path, timeout=10) as answer:
                        answer.read()
                    probes.append((time.perf_counter() - start) * 1e3)
                except OSError as err:
                    failed.append(f"{path}: {err}")

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        result = traffic.run(url, test.x, test.y, rate, seconds)
    finally:
        done.set()
        prober.join()
    shed = result.errors.get("503", 0)
    other = {k: v for k, v in result.errors.items() if k != "503"}
    print(f"\noverload: mloop asked {rate:g}/s for {seconds:g} s: {result.throughput:.0f}"
          f" answered/s (p50 {result.latency_ms['p50']:.1f} ms, p99"
          f" {result.latency_ms['p99']:.1f} ms), {shed} shed with 503, other errors {other},"
          f" not sent (generator's own limit of waiting requests) {result.skipped};"
          f" probes: {len(probes)} answered, slowest {max(probes, default=float('nan')):.1f}"
          f" ms, failed {len(failed)}")  # fmt: skip


def targets(fixed: dict, best: dict | None) -> None:
    """The issue's targets, each with its figure."""
    at = {rate: fixed["mloop"][rate] for rate in FIXED}
    p99 = {rate: median(runs, lambda t, m: t.latency_ms["p99"]) for rate, runs in at.items()}
    errors = sum(sum(t.errors.values()) + t.skipped for t, _ in at[1000])
    rss = max(m.rss_mb for _, m in at[1000])
    checks = [
        (
            f"1,000/s: p99 {p99[1000]:.1f} ms < 50 ms, {errors} errors",
            p99[1000] < 50 and not errors,
        ),  # fmt: skip
        (f"250/s: p99 {p99[250]:.1f} ms < 10 ms", p99[250] < 10),
        (f"peak service RSS at 1,000/s {rss:.0f} MB < 500 MB", rss < 500),
    ]
    if best:
        ratio = best["mloop"] / best["peer"] if best["peer"] else float("nan")
        checks.append((f"max sustainable rate {best['mloop']:g}/s >= 0.8x the peer's"
                       f" {best['peer']:g}/s ({ratio:.2f}x)", ratio >= 0.8))  # fmt: skip
    print("\ntargets:")
    for text, met in checks:
        print(f"  {'met    ' if met else 'NOT met'}  {text}")


if __name__ == "__main__":
    main()
