"""A bounded load generator for the served model: ``mloop traffic``.

Sends single-image requests at a fixed rate (open loop: a slow server does not
slow the sender, so queueing shows up in the latencies) for a fixed time, drawn
from image files (``--files``: uploaded to /predict_files) or from the test split
(in a new random order each pass, so a few hundred requests look like the split,
not like a resample of it), optionally drifted (noise or an intensity shift). With
``feedback`` > 0 that share of the answered requests get their true label posted to
/feedback, as a labelling process would later. With ``retries`` > 0 a request
refused with 503 and a Retry-After header (the service's back-pressure) is sent
again after that wait (plus up to half of it at random, so refused requests do not
come back together), up to that many times, as a well-behaved client does; its
latency then counts from the first try. Prints requests/s, latency percentiles,
errors by status and retries.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.core.kinds import kind as data_kind
from components.core.kinds.texts import TextBatch
from components.core.splits import load_meta

MAX_IN_FLIGHT = 512  # requests not yet answered; beyond it the sender counts a skip


@dataclass(frozen=True)
class TrafficResult:
    drift: str
    rate: float  # asked for, per second
    duration_s: float  # from the first send to the last answer
    sent: int
    ok: int
    errors: dict[str, int]  # status (or exception name) -> count
    skipped: int  # not sent: MAX_IN_FLIGHT requests were already waiting
    latency_ms: dict[str, float]  # p50, p95, p99, max of answered requests
    labelled: int  # feedback posts accepted
    versions: dict[str, int] = field(default_factory=dict)  # model_version -> answers
    correct: int = 0  # answered predictions that match their label
    predicted: int = 0  # answered predictions with a label to compare
    retried: int = 0  # tries repeated after a 503 with Retry-After

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.predicted if self.predicted else None

    @property
    def throughput(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0

    def summary(self) -> str:
        lat = self.latency_ms
        errors = sum(self.errors.values())
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())) or "none"
        return (
            f"{self.sent} requests ({self.drift}) in {self.duration_s:.1f} s:"
            f" {self.throughput:.1f} answered/s (asked {self.rate:g}/s);"
            f" latency p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms,"
            f" p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms;"
            f" errors {errors} ({detail}); retried {self.retried}; skipped {self.skipped};"
            f" labels sent {self.labelled};"
            f" model versions {self.versions}"
            + (f"; accuracy {self.accuracy:.4f}" if self.accuracy is not None else "")
        )


def run(
    url: str,
    images: np.ndarray,
    labels: np.ndarray,
    rate: float,
    duration_s: float,
    drift: str = "none",
    feedback: float = 0.0,
    token: str | None = None,
    seed: int = 0,
    batch: int = 1,
    retries: int = 0,
    labeller_token: str | None = None,
) -> TrafficResult:
    """Send ``rate`` requests per second for ``duration_s`` seconds to ``url`` (the service),
    each of one image, or of ``batch`` images; a 503 with Retry-After is retried up to
    ``retries`` times. Labels go to /feedback with ``labeller_token``."""
    return asyncio.run(
        _run(
            url.rstrip("/"),
            images,
            labels,
            rate,
            duration_s,
            drift,
            feedback,
            token,
            seed,
            batch,
            retries,
            labeller_token,
        )  # fmt: skip
    )


async def _run(url, images, labels, rate, duration_s, drift, feedback, token, seed, batch,
               retries, labeller_token):  # fmt: skip
    import aiohttp

    rng = np.random.default_rng(seed)
    endpoint, headers = "predict", {"Content-Type": "application/json"}
    if batch == 1:
        groups = [[i] for i in range(len(images))]
    else:
        groups = [list(range(i, i + batch)) for i in range(0, len(images) - batch + 1, batch)]
    if isinstance(images, TextBatch):  # texts: JSON to /predict_text
        endpoint = "predict_text"
        bodies = [json.dumps({"texts": [images.texts[j] for j in g]}).encode() for g in groups]
    elif isinstance(images, Files):  # image files: one multipart upload per request
        endpoint, bodies = "predict_files", [multipart([images.files[j] for j in g])
                                             for g in groups]  # fmt: skip
        headers["Content-Type"] = f"multipart/form-data; boundary={BOUNDARY}"
    else:
        bodies = [json.dumps({"images": images[g].tolist()}).encode() for g in groups]
    if token:
        headers["Authorization"] = f"Bearer {token}"
    latencies: list[float] = []
    errors: Counter = Counter()
    versions: Counter = Counter()
    labelled = correct = predicted = retried = 0
    in_flight: set[asyncio.Task] = set()

    async def one(session, i: int) -> None:
        nonlocal labelled, correct, predicted, retried
        start = time.perf_counter()
        for attempt in range(retries + 1):
            try:
                post = session.post(f"{url}/{endpoint}", data=bodies[i], headers=headers)
                async with post as answer:
                    body = await answer.read()
                    status, wait = answer.status, retry_after(answer.headers)
            except (TimeoutError, aiohttp.ClientError) as err:
                errors[type(err).__name__] += 1
                return
            if status != 503 or wait is None or attempt == retries:
                break
            retried += 1
            await asyncio.sleep(wait * (1 + rng.random() / 2))  # jitter: no retry waves
        if status != 200:
            errors[str(status)] += 1
            return
        latencies.append((time.perf_counter() - start) * 1e3)
        reply = json.loads(body)
        versions[reply["model_version"]] += 1
        for j, answer in zip(groups[i], reply["predictions"], strict=False):
            if str(labels[j]) != "":  # a loose file has no label
                predicted += 1
                correct += str(answer["class"]) == str(labels[j])
        if feedback and rng.random() < feedback:
            label = json.dumps(
                {"request_id": reply["request_id"], "labels": [plain(labels[j]) for j in groups[i]]}
            )
            json_headers = {**headers, "Content-Type": "application/json"}
            if labeller_token:
                json_headers["Authorization"] = f"Bearer {labeller_token}"
            for attempt in range(2):  # a connection reset before an answer: once more
                try:
                    async with session.post(f"{url}/feedback", data=label,
                                            headers=json_headers) as answer:  # fmt: skip
                        # 409 on the second try: the first one's labels landed after all
                        labelled += answer.status == 200 or (attempt and answer.status == 409)
                    break
                except (TimeoutError, aiohttp.ClientError) as err:
                    if attempt or not isinstance(
                        err, aiohttp.ClientOSError | aiohttp.ServerDisconnectedError
                    ):
                        errors[f"feedback {type(err).__name__}"] += 1
                        break

    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
    sent = skipped = 0
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        start = time.perf_counter()
        total = int(rate * duration_s)
        for n in range(total):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= MAX_IN_FLIGHT:
                skipped += 1
                continue
            if n % len(bodies) == 0:  # each pass a new order: drawn without replacement
                order = rng.permutation(len(bodies))
            task = asyncio.create_task(one(session, int(order[n % len(bodies)])))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            sent += 1
        if in_flight:
            await asyncio.gather(*in_flight)
        elapsed = time.perf_counter() - start
    lat = np.array(latencies) if latencies else np.array([float("nan")])
    return TrafficResult(
        drift=drift,
        rate=rate,
        duration_s=elapsed,
        sent=sent,
        ok=len(latencies),
        errors=dict(errors),
        skipped=skipped,
        latency_ms={
            "p50": float(np.percentile(lat, 50)),
            "p95": float(np.percentile(lat, 95)),
            "p99": float(np.percentile(lat, 99)),
            "max": float(lat.max()),
        },
        labelled=labelled,
        versions=dict(versions),
        correct=correct,
        predicted=predicted,
        retried=retried,
    )


def plain(value):
    """A label as JSON takes it: numpy's scalars as Python's, strings as they are."""
    return value.item() if hasattr(value, "item") else value


def retry_after(headers) -> float | None:
    """Seconds a Retry-After header asks to wait (at most 10), None without a usable one."""
    try:
        return min(max(float(headers.get("Retry-After", "")), 0.0), 10.0)
    except ValueError:
        return None


BOUNDARY = "mloop-traffic-3f1c9a"


@dataclass(frozen=True)
class Files:
    """Image files to upload: ``(name, bytes)`` pairs, sent as they are."""

    files: list[tuple[str, bytes]]

    def __len__(self) -> int:
        return len(self.files)


def multipart(files: list[tuple[str, bytes]], field: str = "files") -> bytes:
    """A multipart/form-data body (``BOUNDARY``) with each file under ``field``."""
    parts = []
    for name, data in files:
        kind = "image/png" if name.lower().endswith(".png") else "image/jpeg"
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}";'
            f' filename="{Path(name).name}"\r\nContent-Type: {kind}\r\n\r\n'.encode()
            + data + b"\r\n"
        )  # fmt: skip
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def folder_files(folder: Path, limit: int = 2000, seed: int = 0) -> tuple[Files, np.ndarray]:
    """Up to ``limit`` PNG/JPEG files of ``folder`` (a class folder's name is the label;
    loose files have none), drawn at random, read into memory once."""
    from components.core.kinds.images import IMAGE_SUFFIXES

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    found = sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.is_symlink()
    )  # fmt: skip
    if not found:
        raise ValueError(f"{folder}: no PNG or JPEG files")
    picked = np.random.default_rng(seed).permutation(len(found))[:limit]
    chosen = [found[i] for i in sorted(picked)]
    labels = np.asarray([p.parent.name if p.parent != folder else "" for p in chosen])
    return Files([(str(p.relative_to(folder)), p.read_bytes()) for p in chosen]), labels


def test_images(params, ws, drift: str):
    """The test split's images or texts, clean or changed (``noise``, ``shift``, ``invert``:
    the data kind's ``traffic``), and their labels."""
    meta = load_meta(ws.prepared)
    fault = "clean" if drift == "none" else drift
    return data_kind(meta["kind"]).traffic(ws.prepared, meta, fault, params)
