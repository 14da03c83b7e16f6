"""POST /mcp: the MCP server (app/web/mcp_server.py) served by the Flask app itself, in every
process that serves the API (gunicorn workers, `dualmcp standalone`'s waitress).

The SDK's transport is ASGI only. Here it runs as `StreamableHTTPSessionManager(stateless=True,
json_response=True)` on an event loop of its own (a daemon thread that holds `manager.run()`
open), and a view hands it the request through a2wsgi (research-mcp-and-ui.md A2, option B).
Being a Flask view, /mcp gets what every endpoint gets: the API-key check (401 with
`WWW-Authenticate: Bearer` and no OAuth metadata, which would make Claude Code drop its static
header: anthropics/claude-code#59467), the JSON error format, the body-size limit, metrics, and
an entry in the OpenAPI document. Checked before the SDK sees anything: the Origin (spec: MUST,
403) and the method (GET and DELETE are 405: a stateless legacy GET would hold a thread on an
idle SSE stream).

The loop starts on the first /mcp request, in the process that serves it: so after gunicorn's
fork (a thread does not survive one), even with --preload, and never for apps that serve no /mcp
(tests build many). It stops when its app is garbage-collected, or on `McpRuntime.close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import logging
import threading
import weakref
from typing import Any, Literal, cast

from a2wsgi import ASGIMiddleware
from flask import Blueprint, Flask, Response, current_app, g, request
from flask.typing import ResponseReturnValue
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from pydantic import BaseModel, ConfigDict

from app.web.admission import queue_is_full
from app.web.api import endpoint
from app.web.context import WebContext, web_context
from app.web.errors import ApiError
from app.web.mcp_server import SCOPE_HEADER, ToolHost, build_server

bp = Blueprint("mcp", __name__)

EXTENSION = "dualmcp.mcp"
#: Seconds the event loop may take to start serving.
_START_TIMEOUT_S = 10.0
#: The environ key of SCOPE_HEADER, which the view always overwrites.
_SCOPE_ENVIRON_KEY = "HTTP_" + SCOPE_HEADER.upper().replace("-", "_")


class JsonRpcAnswer(BaseModel):
    """A JSON-RPC 2.0 answer: its `result`, or its `error` (a message the SDK refuses: 400)."""

    model_config = ConfigDict(extra="allow")

    jsonrpc: Literal["2.0"]
    id: str | int | None = None


_ANSWERS: dict[int, type[BaseModel] | None] = {
    200: JsonRpcAnswer,
    202: None,
    400: JsonRpcAnswer,
    401: None,
    403: None,
    413: None,
    415: None,
}
#: What the SDK reads: one JSON-RPC message. An `id` it cannot use makes it a notification
#: (202), so the document sets no type on it.
_MESSAGE = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["jsonrpc", "method"],
            "properties": {
                "jsonrpc": {"const": "2.0"},
                "method": {"type": "string"},
                "id": {"description": "a string or an integer; without one, a notification"},
                "params": {"type": ["object", "null"]},
            },
        }
    }
}


def init_app(app: Flask) -> None:
    """Serve /mcp from `app`; nothing starts until the first request to it."""
    app.extensions[EXTENSION] = McpRuntime(app.extensions["dualmcp"])
    app.register_blueprint(bp)


class McpRuntime:
    """One app's MCP session manager and the event loop that runs it, started on first use."""

    def __init__(self, context: WebContext) -> None:
        self.context = context
        self._lock = threading.Lock()
        self._asgi: ASGIMiddleware | None = None
        self._stop: weakref.finalize[Any, Any] | None = None

    def asgi(self) -> ASGIMiddleware:
        """The SDK's ASGI app as WSGI, bound to this process's running loop."""
        with self._lock:
            if self._asgi is None:
                # Started in an empty context: a loop keeps the context it was made in (its
                # self-pipe reader's), and this request's Flask contexts would keep the app alive.
                self._asgi = contextvars.Context().run(self._start)
            return self._asgi

    def close(self) -> None:
        """Stop the loop, if it started; a later request starts another."""
        with self._lock:
            if self._stop is not None:
                self._stop()
            self._asgi, self._stop = None, None

    def _start(self) -> ASGIMiddleware:
        # The SDK logs "Terminating session: None" at INFO after every stateless legacy request.
        transport_log = logging.getLogger("mcp.server.streamable_http")
        if transport_log.level == logging.NOTSET:
            transport_log.setLevel(logging.WARNING)
        context = self.context
        host = ToolHost(
            sessions=context.sessions,
            publish=context.publish,
            agent_tasks=context.agent_tasks,
            admits_run=lambda: not queue_is_full(context),
            wait_s=context.settings.mcp_wait_s,
        )
        # run() may be entered once per manager: one manager per runtime (research A2).
        manager = StreamableHTTPSessionManager(
            app=build_server(host),
            stateless=True,
            json_response=True,
            security_settings=None,  # no Host allow-list; the Origin is checked in this module
        )
        loop = asyncio.new_event_loop()
        ready, stop = threading.Event(), asyncio.Event()

        async def hold_open() -> None:
            async with manager.run():
                ready.set()
                await stop.wait()

        thread = threading.Thread(
            target=_serve, args=(loop, hold_open()), name="dualmcp-mcp", daemon=True
        )
        thread.start()
        if not ready.wait(_START_TIMEOUT_S):
            raise RuntimeError("the MCP event loop did not start")
        # Referencing neither self nor the app: collecting them stops the loop.
        self._stop = weakref.finalize(self, _stop_loop, loop, stop, thread)
        # a2wsgi's own ASGI types are narrower than the SDK's (same protocol).
        return ASGIMiddleware(cast(Any, manager.handle_request), loop=loop)


def _serve(loop: asyncio.AbstractEventLoop, main: Any) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main)
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


def _stop_loop(
    loop: asyncio.AbstractEventLoop, stop: asyncio.Event, thread: threading.Thread
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed already
        loop.call_soon_threadsafe(stop.set)
    if thread is not threading.current_thread():
        thread.join(timeout=_START_TIMEOUT_S)


@bp.before_request
def _check_origin() -> None:
    """A browser page from an origin not allowed is refused before anything else (spec: 403);
    clients that are not browsers send no Origin."""
    origin = request.headers.get("Origin")
    if origin is not None and _normal(origin) not in _allowed_origins():
        raise ApiError(
            403,
            "forbidden_origin",
            "this Origin may not call /mcp (DUALMCP_MCP_ALLOWED_ORIGINS lists those that may)",
        )


@endpoint(
    bp,
    "/mcp",
    method="POST",
    summary="The MCP server (Streamable HTTP, JSON answers, both protocol generations): tools"
    " for workflows, exposed agents and get_run; calling a tool needs invoke",
    auth="read",
    responses=_ANSWERS,
    raw_body=_MESSAGE,
)
def serve_mcp() -> ResponseReturnValue:
    if request.mimetype != "application/json":  # the SDK would answer a bare 400 in text/html
        raise ApiError(415, "unsupported_media_type", "the body must be application/json")
    body = request.get_data(cache=False)  # MAX_CONTENT_LENGTH makes this a 413 when too large
    environ = {
        **request.environ,
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
        _SCOPE_ENVIRON_KEY: g.api_scope,  # set by the key check; replaces any sent by the client
    }
    runtime: McpRuntime = current_app.extensions[EXTENSION]
    # In a context of its own: a2wsgi hands the request to the loop with call_soon_threadsafe,
    # whose tasks would otherwise copy (and keep alive) this thread's Flask contexts.
    return contextvars.Context().run(
        Response.from_app, cast(Any, runtime.asgi()), environ, buffered=True
    )


@endpoint(
    bp,
    "/mcp",
    summary="Not served: /mcp takes POST only (405)",
    auth="none",
    responses={405: None},
)
def mcp_get() -> ResponseReturnValue:
    raise _post_only()


@endpoint(
    bp,
    "/mcp",
    method="DELETE",
    summary="Not served: /mcp has no sessions (405)",
    auth="none",
    responses={405: None},
)
def mcp_delete() -> ResponseReturnValue:
    raise _post_only()


@bp.after_request
def _advertise_post_only(response: Response) -> Response:
    """OPTIONS names what /mcp serves, as a 405 does: POST (the GET and DELETE routes above
    exist only to say no)."""
    if request.method == "OPTIONS":
        response.headers["Allow"] = "OPTIONS, POST"
    return response


def _post_only() -> ApiError:
    """Stateless: no standalone SSE stream (GET) and no session to end (DELETE)."""
    message = "the MCP endpoint takes POST only: it keeps no SSE stream and no session"
    return ApiError(405, "method_not_allowed", message, headers={"Allow": "POST"})


def _allowed_origins() -> frozenset[str]:
    spec = web_context().settings.mcp_allowed_origins
    return frozenset(_normal(origin) for origin in spec.split(",") if origin.strip())


def _normal(origin: str) -> str:
    return origin.strip().rstrip("/").lower()
