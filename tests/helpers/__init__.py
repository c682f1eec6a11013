"""Helpers shared by several test files (fixtures stay in conftest.py)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from components.core.config import Params, parse_params
from components.serve import supervisor

REPO = Path(__file__).resolve().parents[2]
# Public data sets nobody here wrote (../shared/data/README.md); tests skip where absent.
SHARED_DATA = REPO.parent / "shared" / "data"
ADULT = SHARED_DATA / "adult"

# Script that marks the page when it runs: the marker never appears in the source as is.
HOSTILE = (
    "<script>document.title='pw'+'ned'</script><img src=x onerror=\"document.title='pw'+'ned'\">"
)
RAN = "pwned"


def chromium() -> str:
    """Debian's Chromium; CI must have it, a developer's machine may skip."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def render(browser: str, url: str, profile: Path) -> str:
    """The page as headless Chromium renders it, after its scripts have run."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=20000",
             "--window-size=1600,1000", "--dump-dom", url]  # fmt: skip
    done = subprocess.run([browser, *flags], capture_output=True, text=True, timeout=120)
    return done.stdout


def assert_no_script_ran(page: Path, profile: Path) -> str:
    """Render a report from hostile data; fail if its script ran. Returns the DOM."""
    dom = render(chromium(), page.resolve().as_uri(), profile)
    assert "<html" in dom.lower(), f"{page} did not render"
    assert RAN not in dom, f"script from the data ran in {page}"
    return dom


def raw_post(port: int, headers: dict, body: bytes = b"", chunks: int = 0) -> tuple[int, float]:
    """POST by hand: ``body``, then up to ``chunks`` more MiB while the server has not
    answered. Returns the status and the seconds until it came."""
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode() + body)
        mib = b"1" * 2**20
        for _ in range(chunks):
            if select.select([sock], [], [], 0)[0]:
                break  # the answer came before the body was sent
            try:
                sock.sendall(mib)
            except OSError:
                break
        answer = b""
        while b"\r\n" not in answer:
            part = sock.recv(4096)
            if not part:
                break
            answer += part
    return int(answer.split()[1]), time.perf_counter() - start


def small_params(**sections) -> Params:
    """The real params.yaml, shrunk for speed; keyword arguments override sections."""
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train"]["epochs"] = 6
    raw["compress"].update(latency_repeats=20, finetune_epochs=2)
    raw["compress"]["distill"]["epochs"] = 3
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return parse_params(raw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hpa_metric() -> str:
    """The Pods metric the Bento's autoscaler reads (a served /metrics must carry it)."""
    import yaml

    docs = yaml.safe_load_all((REPO / "infra" / "k8s" / "bento.yaml").read_text())
    (hpa,) = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    (pods,) = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    return pods["metric"]["name"]


def get(port: int, path: str, **headers) -> tuple[int, bytes]:
    """GET ``path`` (``/metrics``) of the local service with ``headers``: status and body."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def post(port: int, body: bytes, path: str = "predict", token: str | None = None):
    """POST a JSON body to the local service; the status and the decoded answer."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"http://127.0.0.1:{port}/{path}", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@contextlib.contextmanager
def mloop_serve(root: Path):
    """``mloop serve`` of workspace ``root`` on a free loopback port, as a user starts it
    (the environment as it is, but for the workspace's own labeller file); yields the port
    once it says it is ready, stops it after."""
    import sys

    from components.core.paths import Workspace

    port = free_port()
    # its own labeller file: an earlier test's workspace may be in this process's environment
    env = {**os.environ, "MLOOP_LABELLER_TOKENS": str(Workspace(Path(root)).labellers)}
    server = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "--workspace", str(root), "serve", "--port",
         str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
        start_new_session=True, cwd=REPO,
    )  # fmt: skip
    try:
        for line in server.stdout:  # "mloop: ready" once the Bento answers
            if b"ready" in line or server.poll() is not None:
                break
        yield port
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)


def labeller(log: Path) -> str:
    """The labeller token of a service ``served`` with the inference log ``log``."""
    from components.core.credentials import first_token

    return first_token(log.with_name("labellers.json"))


@contextlib.contextmanager
def served(tag: str, log: Path, **env):
    """``bentoml serve TAG`` on a free loopback port, logging to ``log``; yields the port.
    Its labeller file is beside the log (``labeller(log)``: the token /feedback wants)."""
    from components.core.credentials import ensure_labeller_file

    port = free_port()
    ensure_labeller_file(log.with_name("labellers.json"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOOP_INFERENCE_LOG", str(log))
        mp.setenv("MLOOP_LABELLER_TOKENS", str(log.with_name("labellers.json")))
        for key, value in env.items():
            mp.setenv(key, value)
        server = supervisor.start(tag, "127.0.0.1", port, log.with_suffix(".out"))
    try:
        supervisor.wait_ready("127.0.0.1", port, server, log_file=log.with_suffix(".out"))
        yield port, server
    finally:
        supervisor.stop(server)


@contextlib.contextmanager
def looped(root: Path, raw: dict):
    """One whole run of the ``retrain`` flow in a new workspace at ``root`` with params
    ``raw`` (a mapping as in params.yaml); yields the workspace and the flow's state."""
    import yaml

    from components.core.paths import Workspace
    from flows.retrain import retrain

    ws = Workspace(root)
    ws.state.mkdir(parents=True)
    ws.params.write_text(yaml.safe_dump(raw))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws.mlflow_db}")
        yield ws, retrain(params_file=str(ws.params), workspace=str(ws.root), return_state=True)


def repo_params() -> dict:
    """The repository's params.yaml as a mapping, to change before a run."""
    import yaml

    return yaml.safe_load((REPO / "params.yaml").read_text())
