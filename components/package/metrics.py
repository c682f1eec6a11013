"""Bounded Prometheus series: a request path that is no route, and a request the gate
refused, never become series of their own.

BentoML's traffic middleware (the outermost of the service's middlewares, in front of
``http_gate.RequestGate``) labels every request with its raw path: 3,000 requests to random
paths made 60,000 series, a 13.7 MB scrape of 6.5 s and 216 MB more in the server. ``install``
puts a subclass in its place, before the server builds its app: it records the same
metrics under the same names, labelled by route (``/predict_rows``), ``unmatched`` for a
path that is no route, and ``refused`` for what the gate answered itself (its answers
carry ``x-mloop-refused``), each with its status code. The number of series is then at most
(routes + 2) x status codes, whatever the traffic.
"""

from __future__ import annotations

from collections.abc import Iterable
from timeit import default_timer

UNMATCHED = "unmatched"  # a path that is no route: one label for all of them
REFUSED = "refused"  # answered by the gate (Host, origin, token, size, load): by status only
REFUSED_HEADER = b"x-mloop-refused"  # set on the gate's own answers
# BentoML's own routes beside the service's APIs
SERVER_ROUTES = ("/", "/docs.json", "/schema.json", "/livez", "/readyz", "/healthz", "/metrics")


def install(api_routes: Iterable[str]) -> None:
    """Make BentoML's server label its traffic metrics by ``api_routes`` and BentoML's own
    routes only (called when the service module is imported, before the app is built)."""
    from bentoml._internal.server.http import instruments

    base = instruments.RunnerTrafficMetricsMiddleware
    known = frozenset([*api_routes, *SERVER_ROUTES])
    if getattr(base, "mloop_known", None) is not None:
        base.mloop_known = known  # installed before (a second service module): same routes
        return
    instruments.RunnerTrafficMetricsMiddleware = type(
        "BoundedTrafficMetrics",
        (base,),
        {"mloop_known": known, "__call__": _bounded_call, "__doc__": __doc__},  # fmt: skip
    )


def endpoint_of(path: str, known: frozenset) -> str:
    return path if path in known else UNMATCHED


async def _bounded_call(self, scope, receive, send) -> None:
    """``RunnerTrafficMetricsMiddleware.__call__`` with bounded labels (HTTP; a websocket's
    path is bounded the same way and left to BentoML's own accounting: no route of the
    service takes one)."""
    from bentoml._internal.context import server_context

    if not self._is_setup:
        self._setup()
    protocol, path = scope["type"], scope.get("path", "")
    if protocol == "websocket":  # no route of ours: an unknown path counts as "unmatched"
        bounded = {**scope, "path": endpoint_of(path, self.mloop_known)}
        await type(self).__mro__[1].__call__(self, bounded, receive, send)
        return
    if protocol != "http" or path == "/metrics":
        await self.app(scope, receive, send)
        return
    names = {"service_name": server_context.bento_name,
             "service_version": server_context.bento_version,
             "runner_name": server_context.service_name}  # fmt: skip
    endpoint = endpoint_of(path, self.mloop_known)
    if endpoint != UNMATCHED and not path.startswith(tuple(self.skip_paths)):
        self.metrics_last_request_timestamp.labels(**names).set_to_current_time()
    start, status, refused = default_timer(), 0, False

    async def counted(message) -> None:
        nonlocal status, refused
        if message["type"] == "http.response.start":
            status = message["status"]
            refused = any(k == REFUSED_HEADER for k, _ in message.get("headers", ()))
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            label = REFUSED if refused else endpoint
            self.metrics_request_total.labels(endpoint=label, http_response_code=status,
                                              **names).inc()  # fmt: skip
            took = max(default_timer() - start, 0)
            self.metrics_request_duration.labels(endpoint=label, http_response_code=status,
                                                 **names).observe(took)  # fmt: skip
        await send(message)

    with self.metrics_request_in_progress.labels(endpoint=endpoint, **names).track_inprogress():
        await self.app(scope, receive, counted)
