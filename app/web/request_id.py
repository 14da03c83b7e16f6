"""A request id in every log line of a request, in its answer, and in the node messages it sends.

The id is the caller's `X-Request-ID` when it is a sane token (1-128 of [A-Za-z0-9._-]: it goes
into log lines and message headers, so nothing else is taken), else a new one. It lives in the
log context (app/logs.py) for the request's duration; the dispatcher reads it there and carries it
in each node message's headers, and the node task puts it back into its own log context, so one
id follows a trigger to its last node (issue 16).
"""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

from app.logs import bind_log_context, log_context_value, unbind_log_context

HEADER = "X-Request-ID"
_SANE = re.compile(r"[A-Za-z0-9._-]{1,128}")


def init_app(app: Flask) -> None:
    app.before_request(_bind_request_id)
    app.after_request(_answer_with_request_id)
    app.teardown_request(_unbind_request_id)


def request_id_from(header: str | None) -> str:
    """The caller's id when it is a sane token, else a new one."""
    if header is not None and _SANE.fullmatch(header):
        return header
    return uuid.uuid4().hex


def _bind_request_id() -> None:
    g.dualmcp_log_token = bind_log_context(request_id=request_id_from(request.headers.get(HEADER)))


def _answer_with_request_id(response: Response) -> Response:
    request_id = log_context_value("request_id")
    if request_id is not None:
        response.headers[HEADER] = request_id
    return response


def _unbind_request_id(_error: BaseException | None) -> None:
    token = g.pop("dualmcp_log_token", None)
    if token is not None:
        unbind_log_context(token)
