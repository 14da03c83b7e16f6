"""Admission control (DESIGN.md: Execution 7): refuse new runs at once past a queue-depth limit.

A 503 with Retry-After now is better than an unbounded backlog in which every run finishes late.
An unknown depth (a broker other than Redis, or Redis unreachable) admits: publishing already
survives a broker outage through the outbox, so refusing would only lose triggers.

Under overload most requests are refused, so a refusal must be cheap or the refusals take the
CPU the workers need to drain the queue (issue 17, section 2). `AdmissionGate` decides a
trigger's refusal in front of Flask, from the path and the cached queue depth alone: before the
body is read, a signature checked, a key looked up or PostgreSQL touched, and answers with a
prebuilt body. A refused request has started nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from app import metrics
from app.web.context import WebContext, web_context
from app.web.errors import RETRY_AFTER_S, ApiError, error_body
from app.web.request_id import request_id_from

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

OVERLOADED = "overloaded"
OVERLOADED_MESSAGE = "too much work is queued; retry later"
#: Seconds between two warnings about refusals (a flood must not write a log line each).
WARN_EVERY_S = 10.0
#: The routes that start runs, and each one's trigger source (app/web/triggers.py).
EXECUTE_ROUTE = "/api/workflow/execute"
SEED_WEBHOOK_ROUTE = "/api/triggers/webhook"
WEBHOOK_ROUTE = "/api/triggers/webhook/<workflow_id>"


def admit_new_run() -> None:
    """Return when a new run may start; raise a 503 `overloaded` ApiError when it may not."""
    if queue_is_full(web_context()):
        raise ApiError(
            503, OVERLOADED, OVERLOADED_MESSAGE, headers={"Retry-After": str(RETRY_AFTER_S)}
        )


def queue_is_full(context: WebContext) -> bool:
    """True when a new run must wait: also asked outside a request (/mcp tools). Logged at
    most every WARN_EVERY_S, with the number refused meanwhile."""
    depth = context.queue_depth()
    limit = context.settings.max_queue_depth
    if depth is not None and depth > limit:
        _refusals.note(depth, limit)
        return True
    return False


def trigger_route(method: str, path: str) -> str | None:
    """The route template of a request that would start a run (POST to a trigger path), else
    None; matched by hand, as Flask's router would, without building a request."""
    if method != "POST":
        return None
    if path in (EXECUTE_ROUTE, SEED_WEBHOOK_ROUTE):
        return path
    prefix = SEED_WEBHOOK_ROUTE + "/"
    if path.startswith(prefix) and len(path) > len(prefix) and "/" not in path[len(prefix) :]:
        return WEBHOOK_ROUTE
    return None


class AdmissionGate:
    """WSGI middleware in front of Flask: a trigger past the queue-depth limit is answered 503
    `overloaded` with Retry-After here, and counted in the same metrics as any answer
    (dualmcp_http_request_duration_seconds, dualmcp_triggers_refused); everything else, and
    every trigger while the queue is short, goes on to Flask unchanged."""

    def __init__(self, app: WSGIApplication, context: WebContext) -> None:
        self.app = app
        self.context = context
        self._body = _overloaded_body()
        self._headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(self._body))),
            ("Retry-After", str(RETRY_AFTER_S)),
        ]

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        route = trigger_route(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""))
        if route is None or not queue_is_full(self.context):
            return self.app(environ, start_response)
        # The body is left unread: the server discards it before the next request on the
        # connection (or closes it), with no parsing.
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        start_response("503 SERVICE UNAVAILABLE", [*self._headers, ("X-Request-ID", request_id)])
        metrics.record_trigger_refused("api" if route == EXECUTE_ROUTE else "webhook", OVERLOADED)
        metrics.record_http_request("POST", route, 503, time.perf_counter() - started)
        return [self._body]


def _overloaded_body() -> bytes:
    """The API's error format (app/web/errors.py), as Flask's jsonify writes it."""
    error = error_body(OVERLOADED, OVERLOADED_MESSAGE)
    return json.dumps(error, separators=(",", ":")).encode() + b"\n"


class _RefusalWarnings:
    """One warning per WARN_EVERY_S with the count of refusals since the last one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._unreported = 0
        self._warned_at = float("-inf")

    def note(self, depth: int, limit: int) -> None:
        with self._lock:
            self._unreported += 1
            now = self.clock()
            if now - self._warned_at < WARN_EVERY_S:
                return
            count, self._unreported, self._warned_at = self._unreported, 0, now
        log.warning(
            "refused %d new run(s) since the last warning: %d queued node messages, limit %d",
            count,
            depth,
            limit,
        )


_refusals = _RefusalWarnings()
