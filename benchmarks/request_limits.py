"""Oversized requests against the served Bento: how fast 413 comes, how much memory it costs.

    mloop run                                   # once: a packaged Bento in the workspace
    python benchmarks/request_limits.py [--workspace .] [--mib 100] [--rounds 5]

Starts the workspace's packaged Bento (``bentoml serve``, inference log on), warms
both workers, then sends ``--rounds`` times, alternating, a ``--mib`` MiB body
declared in ``Content-Length`` and the same body chunked (no length: counted while
read). Prints the seconds until the 413 and the service's resident memory (every
process of its family) before and after, with the medians. Target (issue 15):
413 within 1 s, RSS growth under 50 MB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.helpers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=".", help="a workspace `mloop run` packaged")
    parser.add_argument("--mib", type=int, default=100, help="body size in MiB")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from components.core.paths import Workspace, configure_environment

    ws = Workspace(Path(args.workspace).resolve())
    configure_environment(ws)
    import os

    from components.core.process_family import rss_mb
    from components.core.records import read_json
    from components.package.inputs import EXAMPLE_INPUT
    from components.serve import supervisor
    from tests.helpers import raw_post

    bento = read_json(ws.report("bento.json"), "package")
    port = _free_port()
    body = json.dumps({"images": EXAMPLE_INPUT}).encode()
    ok = {"Content-Type": "application/json", "Content-Length": len(body)}
    kinds = {
        "Content-Length": ({"Content-Type": "application/json",
                            "Content-Length": args.mib * 2**20}, b""),
        "chunked": ({"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                    f"{args.mib * 2**20:x}\r\n".encode()),
    }  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLOOP_INFERENCE_LOG"] = f"{tmp}/log.sqlite"
        server = supervisor.start(bento["bento_tag"], "127.0.0.1", port, Path(tmp) / "serve.out")
        try:
            supervisor.wait_ready("127.0.0.1", port, server, log_file=Path(tmp) / "serve.out")
            for _ in range(40):
                assert raw_post(port, ok, body)[0] == 200
            start_rss = rss_mb(server.family)
            for i in range(args.rounds):
                for kind, (headers, head) in kinds.items():
                    before = rss_mb(server.family)
                    status, seconds = raw_post(port, headers, head, chunks=args.mib)
                    rows.append((i, kind, status, seconds, before, rss_mb(server.family)))
            end_rss = rss_mb(server.family)
        finally:
            supervisor.stop(server)
    print(f"{args.mib} MiB bodies to {bento['bento_tag']} (model version {bento['model_version']})")
    print("| round | body | status | seconds to answer | RSS before MB | RSS after MB |")
    print("|---|---|---|---|---|---|")
    for i, kind, status, seconds, before, after in rows:
        print(f"| {i} | {kind} | {status} | {seconds:.3f} | {before:.1f} | {after:.1f} |")
    for kind in kinds:
        times = [r[3] for r in rows if r[1] == kind]
        print(f"median seconds to 413 ({kind}): {statistics.median(times):.3f}")
    print(f"service RSS: {start_rss:.1f} MB before the first, {end_rss:.1f} MB after the last"
          f" (growth {end_rss - start_rss:+.1f} MB; target < 50)")  # fmt: skip


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
