"""A real MCP server on 127.0.0.1 for tests, built with the official SDK and served by uvicorn.

The SDK's low-level `Server` behind `StreamableHTTPSessionManager(stateless=True,
json_response=True)`, so it answers both protocol generations, with a Bearer token checked by a
small ASGI gate (401 before any MCP processing). It records every HTTP request that reached it
and every tool call, so a test can check what the remote side saw:

    with McpPeer() as peer:
        ... McpToolClient(peer.url, {"Authorization": f"Bearer {peer.token}"}, ...) ...
        assert peer.calls == [PeerCall("add", {"a": 2, "b": 3})]

Tools: `add` {a, b} -> structured {"sum"}; `slow` {seconds} sleeps, then answers; `echo` {text}
answers the text; `fail` answers with is_error=True.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
import pytest
import uvicorn
from mcp.server import Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

TOOLS = [
    types.Tool(
        name="add",
        description="Add two numbers.",
        input_schema={
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        },
    ),
    types.Tool(
        name="slow",
        description="Sleep for `seconds`, then answer.",
        input_schema={
            "type": "object",
            "properties": {"seconds": {"type": "number"}},
            "required": ["seconds"],
        },
    ),
    types.Tool(
        name="echo",
        description="Answer with `text`.",
        input_schema={
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
    ),
    types.Tool(
        name="fail",
        description="Always answers with a tool error.",
        input_schema={"type": "object", "properties": {}},
    ),
]


@dataclass(frozen=True)
class PeerCall:
    """One tools/call the server ran."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class PeerRequest:
    """One HTTP request that reached the server (before the token check)."""

    method: str
    #: The Authorization header as received, or None.
    authorization: str | None


def _text(value: str) -> list[types.ContentBlock]:
    return [types.TextContent(type="text", text=value)]


@dataclass(frozen=True)
class _Asgi:
    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class McpPeer:
    """The server, started on construction; `close()` (or leave the `with` block) stops it.

    `json_response=False` answers in SSE; `stateless=False` keeps legacy sessions (a session
    id, a GET stream, a DELETE at the end), as many servers in the wild do.
    """

    def __init__(
        self, token: str | None = None, *, json_response: bool = True, stateless: bool = True
    ) -> None:
        self.token = token or f"peer-{secrets.token_hex(8)}"
        self.calls: list[PeerCall] = []
        self.requests: list[PeerRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        server: Server[Any] = Server(
            "dualmcp-test-peer",
            version="1.0",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        self._manager = StreamableHTTPSessionManager(
            app=server, stateless=stateless, json_response=json_response
        )
        # Route takes a class instance as a raw ASGI app (a bound method would be a view).
        app = Starlette(routes=[Route("/mcp", _Asgi(self._gate))], lifespan=self._lifespan)
        self._socket = socket.create_server(("127.0.0.1", 0))
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the MCP test peer did not start")
            self._thread.join(0.01)

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def headers(self) -> dict[str, str]:
        """The headers a client must send to be let in."""
        return {"Authorization": f"Bearer {self.token}"}

    def close(self) -> None:
        self._stopping.set()
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()

    def __enter__(self) -> McpPeer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        async with self._manager.run():
            yield

    async def _gate(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Record the request, then let it in only with the right Bearer token."""
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        authorization = headers.get("authorization")
        with self._lock:
            self.requests.append(PeerRequest(scope["method"], authorization))
        if authorization != f"Bearer {self.token}":
            body = b'{"error": "unauthorized"}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b"Bearer"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self._manager.handle_request(scope, receive, send)

    async def _list_tools(
        self, _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=TOOLS)

    async def _call_tool(
        self, _ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        arguments = dict(params.arguments or {})
        with self._lock:
            self.calls.append(PeerCall(params.name, arguments))
        if params.name == "add":
            total = arguments["a"] + arguments["b"]
            return types.CallToolResult(
                content=_text(json.dumps({"sum": total})), structured_content={"sum": total}
            )
        if params.name == "slow":
            deadline = anyio.current_time() + float(arguments["seconds"])
            while anyio.current_time() < deadline and not self._stopping.is_set():
                await anyio.sleep(0.02)  # ends early when the peer closes
            return types.CallToolResult(content=_text(f"slept {arguments['seconds']} s"))
        if params.name == "echo":
            return types.CallToolResult(content=_text(str(arguments["text"])))
        if params.name == "fail":
            return types.CallToolResult(content=_text("failed on purpose"), is_error=True)
        return types.CallToolResult(content=_text(f"unknown tool {params.name!r}"), is_error=True)


@pytest.fixture
def mcp_peer() -> Iterator[McpPeer]:
    """A fresh peer per test; import it into a conftest.py to share it."""
    with McpPeer() as peer:
        yield peer
