"""The ASGI middleware in front of the service: names, origins, tokens, load, content type
and body size.

All are checked before BentoML parses anything.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import time
from dataclasses import dataclass

from components.package.metrics import REFUSED_HEADER

# The package stage writes the model's tag beside this file in the Bento it builds.

OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz"})  # probes answer without a token
METRICS_PATH = "/metrics"
UPLOAD_PATH = "/predict_files"  # the one route that takes multipart/form-data (image files)
FEEDBACK_PATH = "/feedback"  # a write path into training data: a labeller's token only
EXPLAIN_PATH = "/explain"  # costs tens of predictions: a rate of its own (MLOOP_EXPLAIN_RATE)
LABELLER_HEADER = b"x-mloop-labeller"  # the labeller's name, set here for the service
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
RETRY_AFTER_S = 1  # what a shed request is told to wait


class TooLarge(Exception):
    pass


@dataclass
class ServiceState:
    """What the service tells its gate while it runs (given to the gate's constructor):
    the body limit of the model it serves, and why it cannot answer now (its log)."""

    body_limit: int | None = None  # the largest legal batch of the model being served
    # BentoML hides a 5xx's message, so the gate puts this reason into the 503 answers
    unavailable: str | None = None
    retry_after: int = 1  # seconds, for the service's own 429s (an expensive route's budget)


class RequestGate:
    """ASGI middleware in front of the APIs.

    A request whose ``Host`` is not a loopback name or address, the address it came in
    on, or one of ``allowed_hosts`` gets 421: a page on a rebinding domain (its name
    resolved to 127.0.0.1 after it loaded) sends its own name, and never reaches the
    service. A POST whose ``Origin`` (a browser's) is not the service's own gets 403.
    POST /feedback wants a labeller's token (``labellers``: token -> name) as its
    bearer, even on loopback, and passes the labeller's name on to the service in
    ``x-mloop-labeller`` (a client's own header of that name is dropped).
    POSTs must say they are JSON: another or a missing content type gets 415 here
    (BentoML would try to parse it, and a page could post into the service
    with a "simple" cross-origin request). The exception is multipart/form-data to
    ``UPLOAD_PATH``, for image files; as any form post, a page can send it, so a
    service beyond loopback wants a token (``mloop serve`` asks for one). A body over
    the limit gets 413 before it is parsed: its length is checked from the header,
    then while it is read.
    With a token set, any request but the probes without ``Authorization: Bearer
    <token>`` gets 401; /metrics also takes the metrics token. A POST that finds
    ``max_in_flight`` requests of this worker under way gets 503 with ``Retry-After``
    at once: beyond capacity the service sheds load instead of queueing every
    request into a timeout, and the probes, never shed, stay fast. POST /explain has a
    rate of its own (``explain_rate`` per second per worker, a burst of as many): beyond
    it, 429 with ``Retry-After``; the service then admits each by its cost in CPU-seconds
    (``explaining.py``). Explanations never hold the cheap routes' ``max_in_flight`` slots.
    """

    def __init__(
        self,
        app,
        token: str | None = None,
        metrics_token: str | None = None,
        max_body: int | None = None,
        max_in_flight: int = 64,
        allowed_hosts: str = "",
        labellers: dict[str, str] | None = None,
        state: ServiceState | None = None,
        explain_rate: float = 10.0,
    ) -> None:
        self.app = app
        self.explain_rate = explain_rate  # MLOOP_EXPLAIN_RATE: a token bucket, one per worker
        self.explain_tokens, self.explain_at = max(explain_rate, 1.0), time.monotonic()
        self.state = state or ServiceState()  # the service's, updated as it runs
        names = {h.strip().lower().rstrip(".") for h in allowed_hosts.split(",") if h.strip()}
        self.any_host = "*" in names
        self.allowed_hosts = frozenset(names - {"*"})
        self.labellers = [(t.encode(), name.encode()) for t, name in (labellers or {}).items()]
        self.max_in_flight = max_in_flight  # MLOOP_MAX_IN_FLIGHT
        self.in_flight = 0  # POSTs under way in this worker (one event loop), /explain apart
        self.explaining = 0  # POST /explain under way (most are shed by their CPU budget)
        self.expected = f"Bearer {token}".encode() if token else None
        self.metrics = f"Bearer {metrics_token}".encode() if metrics_token else None
        self.max_body = max_body  # MLOOP_MAX_BODY_BYTES; None: the model's largest batch

    def limit(self) -> int:
        return self.max_body or self.state.body_limit or 8 * 2**20

    def _authorised(self, path: str, given: bytes) -> bool:
        if self.expected is None:
            return True
        if hmac.compare_digest(given, self.expected):
            return True
        return (
            path == METRICS_PATH
            and self.metrics is not None
            and hmac.compare_digest(given, self.metrics)
        )

    def _host_allowed(self, scope, host: bytes) -> bool:
        """A loopback name or address, the address the request came in on, or allowed."""
        if self.any_host or not host:  # no Host: no browser sent it (HTTP/1.0)
            return True
        name = _hostname(host.decode("latin-1"))
        if name in LOOPBACK_NAMES or name in self.allowed_hosts:
            return True
        server = scope.get("server")
        if server and name == str(server[0]).lower():
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False

    def _labeller(self, given: bytes) -> bytes | None:
        """The name of the labeller whose token ``given`` (``Bearer <token>``) is."""
        for token, name in self.labellers:
            if hmac.compare_digest(given, b"Bearer " + token):
                return name
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"")
        if not self._host_allowed(scope, host):
            shown = host.decode("latin-1")[:80]
            await _refuse(send, 421, f"this service does not answer for host {shown!r}: use a"
                                     " loopback name or its address, or list the name in"
                                     " MLOOP_ALLOWED_HOSTS")  # fmt: skip
            return
        if scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        origin = headers.get(b"origin")
        if scope["method"] == "POST" and origin is not None and not _same_origin(origin, host):
            await _refuse(send, 403, f"cross-origin POST from {origin.decode('latin-1')[:80]!r}"
                                     " refused: only the service's own pages may post")  # fmt: skip
            return
        given = headers.get(b"authorization", b"")
        if scope["path"] == FEEDBACK_PATH:
            labeller = self._labeller(given)
            if labeller is None:
                why = ("no labeller token is configured (MLOOP_LABELLER_TOKENS or"
                       " MLOOP_LABELLER_TOKEN)") if not self.labellers else (
                       "missing or wrong labeller token")  # fmt: skip
                await _refuse(send, 401, f"/feedback feeds training: {why}; send"
                                         " 'Authorization: Bearer <labeller token>' (mloop"
                                         " serve says where the workspace's is)",
                              [(b"www-authenticate", b"Bearer")])  # fmt: skip
                return
            kept = [(k, v) for k, v in scope["headers"] if k.lower() != LABELLER_HEADER]
            scope = {**scope, "headers": [*kept, (LABELLER_HEADER, labeller)]}
        elif not self._authorised(scope["path"], given):
            await _refuse(send, 401, "missing or wrong bearer token (Authorization header)",
                          [(b"www-authenticate", b"Bearer")])  # fmt: skip
            return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        costly = scope["path"] == EXPLAIN_PATH  # its own budget (package/explaining.py)
        if costly and self.explaining >= self.max_in_flight:
            await _refuse(send, 503, f"at capacity: {self.explaining} explanations under way in"
                                     f" this worker; retry after {RETRY_AFTER_S} s",
                          [(b"retry-after", str(RETRY_AFTER_S).encode())])  # fmt: skip
            return
        if not costly and self.in_flight >= self.max_in_flight:
            await _refuse(send, 503, f"at capacity: {self.in_flight} requests under way in"
                                     f" this worker (MLOOP_MAX_IN_FLIGHT); retry after"
                                     f" {RETRY_AFTER_S} s",
                          [(b"retry-after", str(RETRY_AFTER_S).encode())])  # fmt: skip
            return
        if costly and not self._explain_allowed():
            wait = max(1, round(1 / self.explain_rate))
            await _refuse(send, 429, f"over the explanation rate of {self.explain_rate:g}/s per"
                                     f" worker (MLOOP_EXPLAIN_RATE); retry after {wait} s",
                          [(b"retry-after", str(wait).encode())])  # fmt: skip
            return
        # An explanation never holds a slot of the cheap routes: they keep their capacity
        if costly:
            self.explaining += 1
        else:
            self.in_flight += 1
        try:
            await self._post(scope, receive, send, headers)
        finally:
            if costly:
                self.explaining -= 1
            else:
                self.in_flight -= 1

    def _explain_allowed(self) -> bool:
        """Take a token from the explanation bucket (refilled at ``explain_rate``/s)."""
        now = time.monotonic()
        refill = (now - self.explain_at) * self.explain_rate
        self.explain_tokens = min(max(self.explain_rate, 1.0), self.explain_tokens + refill)
        self.explain_at = now
        if self.explain_tokens < 1:
            return False
        self.explain_tokens -= 1
        return True

    async def _post(self, scope, receive, send, headers: dict) -> None:
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        upload = scope["path"] == UPLOAD_PATH and media == b"multipart/form-data"
        if media != b"application/json" and not upload:
            shown = media.decode("latin-1")[:60] or "none"
            also = f" (or multipart/form-data to {UPLOAD_PATH})"
            await _refuse(send, 415, f"send JSON (Content-Type: application/json){also},"
                                     f" not {shown}")  # fmt: skip
            return
        limit = self.limit()
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(send, 413, f"request body of {int(declared)} bytes is over the limit"
                                     f" of {limit} (MLOOP_MAX_BODY_BYTES)")  # fmt: skip
            return
        try:
            body = await _read_body(receive, limit)
        except TooLarge:
            await _refuse(send, 413, f"request body is over the limit of {limit} bytes"
                                     " (MLOOP_MAX_BODY_BYTES)")  # fmt: skip
            return
        if upload:
            fault = _upload_fault(headers.get(b"content-type", b""), body)
            if fault:
                await _refuse(send, 400, fault)
                return
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:  # the app reads on after the body: only a disconnect is left
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, _with_reason(send, self.state))


def _hostname(host: str) -> str:
    """The name in a Host header, without its port: ``[::1]:3000`` -> ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.rstrip(".")


def _same_origin(origin: bytes, host: bytes) -> bool:
    """``Origin`` names the page's scheme, host and port: the service's own is its Host."""
    text = origin.decode("latin-1").strip().lower()
    own = host.decode("latin-1").strip().lower()
    return bool(own) and text in (f"http://{own}", f"https://{own}")


def _with_reason(send, state: ServiceState):
    """``send`` that replaces the body of a 503 with ``state.unavailable``."""
    reason: bytes | None = None

    async def sending(message) -> None:
        nonlocal reason
        if message["type"] == "http.response.start" and message["status"] == 429:
            said = {k.lower() for k, _ in message["headers"]}
            if b"retry-after" not in said:  # the service's own 429: when to come back
                message = {**message, "headers": [*message["headers"], (
                    b"retry-after", str(state.retry_after).encode())]}  # fmt: skip
        if message["type"] == "http.response.start" and message["status"] == 503:
            if state.unavailable:
                reason = json.dumps({"error": state.unavailable}).encode()
                kept = [(k, v) for k, v in message["headers"]
                        if k.lower() not in (b"content-length", b"content-type")]  # fmt: skip
                message = {**message, "headers": [*kept, (b"content-type", b"application/json"),
                           (b"content-length", str(len(reason)).encode())]}  # fmt: skip
        elif message["type"] == "http.response.body" and reason is not None:
            if message.get("more_body"):
                return
            message = {"type": "http.response.body", "body": reason}
        await send(message)

    return sending


async def _read_body(receive, limit: int) -> bytes:
    """The whole request body, refusing (``TooLarge``) once it passes ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _upload_fault(content_type: bytes, body: bytes) -> str | None:
    """Why a multipart body is no upload of files (BentoML answered a part without a file
    name with a 500), or None. Parsed by the standard library's MIME parser."""
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type + b"\r\n\r\n"
                                                  + body)  # fmt: skip
    if not message.is_multipart():
        return "a multipart/form-data body with its boundary is expected"
    parts = list(message.iter_parts())
    if not parts:
        return "the form holds no files: send each image as a file in the field `files`"
    for i, part in enumerate(parts):
        name = part.get_param("name", header="content-disposition")
        if name != "files" or not part.get_filename():
            return (f"form part {i} is not a file in the field `files`: send each image as"
                    " a file (with a file name) in the field `files`")  # fmt: skip
    return None


async def _refuse(send, status: int, message: str, headers: list | None = None) -> None:
    """Answer ``status`` here; the traffic metrics count it as refused (``metrics.py``)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (REFUSED_HEADER, b"gate"),
                            *(headers or [])]})  # fmt: skip
    await send({"type": "http.response.body", "body": json.dumps({"error": message}).encode()})
