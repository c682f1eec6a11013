"""The served Bento under load: adaptive batching on and off, one and two workers, side by side.

    mloop run                                   # once: a packaged Bento in the workspace
    python benchmarks/serving.py [--workspace .] [--rate 250] [--seconds 15] [--rounds 5]

Starts one real ``bentoml serve`` per setting (inference log on, as in production)
of the service in this checkout with the packaged model (a built Bento fixes its
service graph, so batching on and off cannot both run from one Bento), then sends
single-image requests at ``--rate`` per second from this process
(``components.serve.traffic``, open loop) to each setting in turn, ``--rounds`` times,
so machine noise hits all alike. The table shows medians over the rounds; the
last run holds the default setting at the rate for ``--final`` seconds and
checks the target: p99 under 100 ms and no errors at 250 requests/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

SETTINGS = {  # name: environment of the server
    "no batching, 1 worker": {"MLOOP_BATCHING": "0", "MLOOP_SERVICE_WORKERS": "1"},
    "no batching, 2 workers": {"MLOOP_BATCHING": "0", "MLOOP_SERVICE_WORKERS": "2"},
    "adaptive batching": {"MLOOP_BATCHING": "1", "MLOOP_SERVICE_WORKERS": "1"},
}
DEFAULT = "no batching, 2 workers"  # the service's defaults, chosen from this table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=".", help="a workspace `mloop run` packaged")
    parser.add_argument("--rate", type=float, default=250.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="per setting and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--final", type=float, default=60.0, help="seconds of the final run")
    args = parser.parse_args()

    from components.core.paths import Workspace, configure_environment

    ws = Workspace(Path(args.workspace).resolve())
    configure_environment(ws)
    from components.core.records import read_json
    from components.prepare.splits import load_split
    from components.serve import supervisor, traffic

    bento = read_json(ws.report("bento.json"), "package")
    os.environ["MLOOP_BENTO_MODEL"] = bento["model_tag"]
    os.chdir(Path(__file__).resolve().parent.parent)  # where components/package/service.py is
    tag = "components.package.service:Classifier"
    test = load_split(ws.prepared, "test")
    servers, ports = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for i, (name, env) in enumerate(SETTINGS.items()):
                os.environ.update(env, MLOOP_INFERENCE_LOG=f"{tmp}/log{i}.sqlite")
                ports[name] = port = 3300 + i
                servers[name] = supervisor.start(tag, "127.0.0.1", port, Path(tmp) / f"{i}.out")
                supervisor.wait_ready(
                    "127.0.0.1", port, servers[name], log_file=Path(tmp) / f"{i}.out"
                )
                traffic.run(f"http://127.0.0.1:{port}", test.x, test.y, 50, 2)  # warm-up
            print(f"{tag} serving {bento['model_tag']}; {args.rate:g} single-image requests/s,"
                  f" {args.seconds:g} s per setting, {args.rounds} rounds, load generator on"
                  f" the same machine ({os.cpu_count()} cores)")  # fmt: skip
            runs: dict[str, list] = {name: [] for name in SETTINGS}
            for r in range(args.rounds):
                for name in SETTINGS if r % 2 == 0 else reversed(SETTINGS):  # alternate
                    runs[name].append(traffic.run(f"http://127.0.0.1:{ports[name]}", test.x,
                                                  test.y, args.rate, args.seconds))  # fmt: skip
            print(f"\n{'setting':<24}{'answered/s':>11}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
                  f"{'errors':>8}{'skipped':>9}{'p99 vs default':>16}")  # fmt: skip
            med = {
                name: {
                    key: statistics.median(t.throughput if key == "rps"
                                           else t.latency_ms[key] for t in results)
                    for key in ("rps", "p50", "p95", "p99")
                }
                for name, results in runs.items()
            }  # fmt: skip
            for name, results in runs.items():
                m = med[name]
                errors = sum(sum(t.errors.values()) for t in results)
                skipped = sum(t.skipped for t in results)
                print(f"{name:<24}{m['rps']:>11.1f}{m['p50']:>9.1f}{m['p95']:>9.1f}"
                      f"{m['p99']:>9.1f}{errors:>8}{skipped:>9}"
                      f"{m['p99'] / med[DEFAULT]['p99']:>15.2f}x")  # fmt: skip
            final = traffic.run(f"http://127.0.0.1:{ports[DEFAULT]}", test.x, test.y,
                                args.rate, args.final)  # fmt: skip
            errors = sum(final.errors.values()) + final.skipped
            every = final.ok == int(args.rate * args.final)  # all answered, at the rate
            met = final.latency_ms["p99"] < 100 and not errors and every and args.rate >= 250
            print(f"\nfinal, {DEFAULT} (the default), {args.final:g} s: {final.summary()}")
            print(
                f"target (>= 250/s for 60 s, p99 < 100 ms, 0 errors): {'met' if met else 'NOT met'}"
            )
        finally:
            for server in servers.values():
                supervisor.stop(server)


if __name__ == "__main__":
    main()
