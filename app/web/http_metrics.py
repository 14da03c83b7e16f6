"""Every request's duration by method, route template and status (issue 16): Flask's url_rule
template (`/api/runs/<run_id>`), never the raw path, so the label set stays bounded."""

from __future__ import annotations

import time

from flask import Flask, Response, g, request

from app import metrics


def init_app(app: Flask) -> None:
    """Time from the first before_request hook to the answer (a stream's body not included);
    registered before the other hooks, so one that answers early (a 429) is timed too."""
    app.before_request_funcs.setdefault(None, []).insert(0, _start_clock)
    app.after_request(_record_request)


def _start_clock() -> None:
    g.request_started = time.perf_counter()


def _record_request(response: Response) -> Response:
    started = g.get("request_started")
    if started is not None:  # None: the request failed before any hook ran
        rule = request.url_rule
        route = rule.rule if rule is not None else metrics.OTHER
        elapsed = time.perf_counter() - started
        metrics.record_http_request(request.method, route, response.status_code, elapsed)
    return response
