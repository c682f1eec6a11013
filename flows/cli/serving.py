"""``mloop serve`` and ``mloop traffic``: the served model, and test traffic to it."""

from __future__ import annotations

import sys
from pathlib import Path

from components.core.settings import settings
from flows import prefect_server
from flows.cli.session import Session

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(s: Session, bento: str | None, host: str, port: int, insecure: bool) -> int:
    ws = s.ws
    from components.serve import supervisor

    if settings().api_token:
        print("mloop: MLOOP_API_TOKEN is set: requests need 'Authorization: Bearer <token>'")
    elif host not in LOOPBACK:
        if not insecure:
            print(f"mloop serve: refusing to serve on {host} without MLOOP_API_TOKEN:"
                  " anyone who reaches it could send predictions and labels. Set the token,"
                  " or pass --insecure", file=sys.stderr)  # fmt: skip
            return 2
        print(f"mloop: WARNING: serving on {host} with no MLOOP_API_TOKEN (--insecure)",
              file=sys.stderr)  # fmt: skip
    log_file = ws.serve_log
    print(f"mloop: inference log {settings().inference_log}; server log {log_file}")
    if not _labellers_ready():
        return 1
    server = None
    try:
        with supervisor.stop_signals_raise():
            if bento:  # a fixed Bento: serve it as it is
                server = supervisor.start(bento, host, port, log_file)
                supervisor.wait_ready(host, port, server, log_file=log_file)
                print(f"mloop: serving {bento} on http://{host}:{port}", flush=True)
                print("mloop: ready", flush=True)
                code = server.wait()
                print(f"mloop: the server exited with {code}", file=sys.stderr)
                return code or 1
            following = supervisor.Supervisor(
                ws.report("bento.json"), host, port, log_file,
                say=lambda line: print(f"mloop: {line}", flush=True), pointer=ws.model_pointer,
            )  # fmt: skip
            return following.run()
    except (FileNotFoundError, RuntimeError, TimeoutError) as err:
        print(f"mloop serve: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mloop: stopped", flush=True)
        return 0
    finally:
        if server is not None:
            prefect_server.stop(server)


def _labellers_ready() -> bool:
    """The labeller file that /feedback checks, written once (mode 0600) if missing."""
    from components.core.credentials import CredentialError, ensure_labeller_file, labeller_tokens

    labellers = settings().labeller_tokens
    try:
        if labellers is not None:
            made = ensure_labeller_file(labellers)
            print(f"mloop: POST /feedback wants a labeller token: {'written to' if made else 'in'}"
                  f" {labellers} (mode 0600), sent as 'Authorization: Bearer <token>'")  # fmt: skip
        labeller_tokens(labellers, settings().labeller_token)  # the environment's too
    except (CredentialError, OSError) as err:
        print(f"mloop serve: {err}", file=sys.stderr)
        return False
    return True


def traffic(s: Session, drift: str, rate: float, duration: float, feedback: float,
            retries: int, port: int, url: str | None, files: Path | None) -> int:  # fmt: skip
    params, ws = s.params(), s.ws
    from components.serve import traffic

    try:
        if files:  # image files as they are: uploads, no drift applied
            images, labels = traffic.folder_files(files, seed=params.seed)
            drift = f"files from {files}"
        else:
            images, labels = traffic.test_images(params, ws, drift)
    except (FileNotFoundError, ValueError) as err:
        print(f"mloop traffic: {err}", file=sys.stderr)
        return 1
    url = url or f"http://127.0.0.1:{port}"
    print(f"mloop: {rate:g} requests/s for {duration:g} s to {url} ({drift})", flush=True)
    from components.core.credentials import first_token

    labeller = first_token(settings().labeller_tokens, settings().labeller_token)
    if feedback and labeller is None:
        print("mloop traffic: --feedback needs a labeller token: none in"
              f" {settings().labeller_tokens} (mloop serve writes it) nor MLOOP_LABELLER_TOKEN",
              file=sys.stderr)  # fmt: skip
        return 1
    result = traffic.run(url, images, labels, rate, duration, drift, feedback,
                         settings().api_token, params.seed, retries=max(retries, 0),
                         labeller_token=labeller)  # fmt: skip
    print(f"mloop: {result.summary()}")
    from components.core.records import write_json

    write_json(ws.report("traffic.json"), {**result.__dict__, "throughput": result.throughput})
    return 0 if result.ok and not result.errors else 1
