"""Remote MCP tools for agents: the official SDK's client, driven from sync worker code.

An agent names remote servers in its config (`{"type": "mcp", "url", "credential", "allow"}`);
its tool loop runs in a worker (Celery prefork or threads), so `McpToolClient` gives that loop a
plain blocking API over one connection for the length of a turn:

- every protocol detail is the SDK's (`mcp.Client` over Streamable HTTP, mode="auto": the
  `server/discover` probe, falling back to `initialize` for older servers);
- every request goes through the SSRF guard (app/safe_http.py) by `AsyncGuardedBridge`, the
  async path of the same guard (research-mcp-and-ui.md A4);
- the SDK runs in an anyio blocking portal (its own thread and event loop: fine under prefork
  and thread pools, not under gevent/eventlet), where one task owns the connection and runs
  the calls one at a time, so a transport failure and the call that met it surface together;
- connecting and each call are bounded; an SDK error (which arrives in an ExceptionGroup) becomes
  one of app.errors, naming the server's host and never a header value.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import anyio
import httpx
import httpx2
import mcp_types as types
from anyio.from_thread import BlockingPortal, start_blocking_portal
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from app.errors import (
    BlockedDestination,
    DriverError,
    PermanentDriverError,
    RetryableDriverError,
)
from app.llm.guarded import AsyncGuardedBridge

__all__ = [
    "McpToolClient",
    "RemoteResult",
    "RemoteServer",
    "RemoteTool",
    "credential_headers",
]

#: How long closing a connection may take (a legacy session's DELETE), in seconds.
CLOSE_TIMEOUT_S = 5.0
#: Slack for the blocking side over the deadlines the event loop enforces itself.
_GRACE_S = 2.0
#: A server whose tools/list never stops paginating is cut off after this many pages.
_MAX_LIST_PAGES = 20
_CLIENT_INFO = types.Implementation(name="dualmcp", version="1")
# RFC 9110 token: what a header name may be.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True)
class RemoteTool:
    """A tool a remote server offers, as the model is shown it."""

    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class RemoteResult:
    """What a remote tool answered: `ok` is False for a tool error (the model may recover)."""

    ok: bool
    #: The text content blocks, joined; the structured content as JSON when there is no text.
    text: str
    structured: Any | None


class RemoteServer(Protocol):
    """What an agent's tool loop needs from one remote tool server during a turn."""

    def list_tools(self) -> list[RemoteTool]: ...

    def call_tool(
        self, name: str, arguments: dict[str, Any], timeout_s: float | None = None
    ) -> RemoteResult: ...


def credential_headers(value: str | Mapping[str, str]) -> dict[str, str]:
    """The headers that carry a stored credential's value: a string is a Bearer token,
    `{"header": "X-Api-Key", "value": "..."}` names its own header."""
    if isinstance(value, str):
        if not value.strip() or "\n" in value or "\r" in value:
            raise PermanentDriverError("an MCP credential token must be one non-empty line")
        return {"Authorization": f"Bearer {value.strip()}"}
    header, secret = value.get("header"), value.get("value")
    if not (isinstance(header, str) and _HEADER_NAME.fullmatch(header)):
        raise PermanentDriverError('an MCP credential is a token or {"header", "value"}')
    if not isinstance(secret, str) or not secret or "\n" in secret or "\r" in secret:
        raise PermanentDriverError(f"the MCP credential for header {header!r} has no usable value")
    return {header: secret}


@dataclass
class _Call:
    """One operation handed to the connection's task, and where its outcome goes."""

    run: Callable[[Client], Awaitable[Any]]
    timeout_s: float
    #: What the call is doing, for an error message ("calling 'add'").
    doing: str
    outcome: Future[Any]


class McpToolClient:
    """One connection to one remote MCP server for the length of an agent turn.

    Use it as a context manager: entering connects (bounded by `timeout_s`), leaving closes the
    connection and its event loop, also after errors. `timeout_s` also bounds each call (a call
    may ask for less). `allow`, when given, is the only tools listed or callable; a call to
    another is an error result, sent nowhere. `mode="legacy"` forces the `initialize` handshake.

    Raises RetryableDriverError (timeouts, unreachable server, 5xx/429) and PermanentDriverError
    (the credential refused, a protocol error; BlockedDestination for the SSRF guard).
    """

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        http: httpx.Client,
        *,
        timeout_s: float = 30.0,
        allow: Collection[str] | None = None,
        mode: Literal["auto", "legacy"] = "auto",
    ) -> None:
        try:
            self.host = httpx.URL(url).host or "?"
        except httpx.InvalidURL:
            raise PermanentDriverError("an MCP server URL that is not a URL") from None
        self.url = url
        self.allow = frozenset(allow) if allow is not None else None
        self.timeout_s = timeout_s
        self._headers = dict(headers)
        self._http = http
        self._mode = mode
        self._stack = contextlib.ExitStack()
        self._portal: BlockingPortal | None = None
        self._calls: MemoryObjectSendStream[_Call] | None = None
        self._session: Future[None] | None = None
        self._current: _Call | None = None
        #: The last HTTP error status the server answered during the current operation.
        self._http_status: int | None = None
        #: Why the connection is gone, once it is.
        self._broken: DriverError | None = None

    # -- the blocking side (the worker's thread) ----------------------------------------------

    def __enter__(self) -> McpToolClient:
        try:
            self._portal = self._stack.enter_context(start_blocking_portal(name="mcp-client"))
            self._stack.callback(self._portal.call, self._portal.stop, True)
            send, receive = anyio.create_memory_object_stream[_Call](math.inf)
            self._calls = send
            connected: Future[None] = Future()
            self._session = self._portal.start_task_soon(self._hold, receive, connected)
            self._wait(connected, self.timeout_s, "connecting")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (a legacy session is ended), then the event loop; idempotent."""
        portal, calls, session = self._portal, self._calls, self._session
        self._portal = self._calls = self._session = None
        try:
            if portal is not None and calls is not None and session is not None:
                with contextlib.suppress(Exception):
                    portal.call(calls.close)
                    session.result(timeout=CLOSE_TIMEOUT_S + _GRACE_S)
        finally:
            self._stack.close()  # cancels whatever is left, stops the loop, joins its thread

    def list_tools(self) -> list[RemoteTool]:
        """The server's tools (only the allowed ones), as the model is shown them."""
        listed: list[types.Tool] = self._submit(self._list_all, self.timeout_s, "listing tools")
        return [
            RemoteTool(tool.name, tool.description or "", dict(tool.input_schema))
            for tool in listed
            if self.allow is None or tool.name in self.allow
        ]

    def call_tool(
        self, name: str, arguments: dict[str, Any], timeout_s: float | None = None
    ) -> RemoteResult:
        """Call one tool; an answer the server gave (a tool error too) is a result, no answer
        within min(timeout_s, self.timeout_s) is a RetryableDriverError."""
        if self.allow is not None and name not in self.allow:
            allowed = ", ".join(sorted(self.allow)) or "none"
            return RemoteResult(
                False, f"tool {name!r} is not allowed here (allowed: {allowed})", None
            )
        bound = self.timeout_s if timeout_s is None else min(timeout_s, self.timeout_s)

        async def call(client: Client) -> RemoteResult:
            try:
                result = await client.call_tool(name, arguments)
            except MCPError as exc:
                status = self._http_status
                if status is not None and (status in (401, 403) or _transient(status)):
                    raise  # refused or failed at the HTTP level: not an answer about the call
                refused = f"the server refused the call: {_clip(exc.message)}"
                return RemoteResult(False, self._redact(refused), None)
            return _result(result)

        outcome: RemoteResult = self._submit(call, bound, f"calling {name!r}")
        return outcome

    def _submit(self, run: Callable[[Client], Awaitable[Any]], timeout_s: float, doing: str) -> Any:
        if self._broken is not None:
            raise self._broken
        if self._portal is None or self._calls is None:
            raise RuntimeError("McpToolClient is used outside its `with` block")
        call = _Call(run, timeout_s, doing, Future())
        try:
            self._portal.call(self._calls.send_nowait, call)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise self._broken or RetryableDriverError(
                f"{self._where}: connection closed"
            ) from None
        return self._wait(call.outcome, timeout_s, doing)

    def _wait(self, outcome: Future[Any], timeout_s: float, doing: str) -> Any:
        # The loop enforces timeout_s itself; this is the backstop should the loop be stuck.
        try:
            return outcome.result(timeout=timeout_s + _GRACE_S)
        except FutureTimeout:
            raise RetryableDriverError(
                f"{self._where}: no answer within {timeout_s:g} s while {doing}"
            ) from None

    # -- the event loop's side (the portal's thread) ------------------------------------------

    async def _hold(self, calls: MemoryObjectReceiveStream[_Call], connected: Future[None]) -> None:
        """The connection's one task: connect, run the calls in turn, close."""
        with calls:
            try:
                await self._connect_and_serve(calls, connected)
            except BaseException as exc:
                call = self._current
                doing = "connecting" if not connected.done() else call.doing if call else "closing"
                error = self._error(exc, self.timeout_s, doing)
                self._broken = error
                pending = [connected, call.outcome if call else None]
                with contextlib.suppress(anyio.WouldBlock, anyio.EndOfStream):
                    while True:
                        pending.append(calls.receive_nowait().outcome)
                for outcome in pending:
                    if outcome is not None and not outcome.done():
                        outcome.set_exception(error)
                if isinstance(exc, anyio.get_cancelled_exc_class()):
                    raise

    async def _connect_and_serve(
        self, calls: MemoryObjectReceiveStream[_Call], connected: Future[None]
    ) -> None:
        async with self._http2_client() as http2:
            # One scope bounds connecting, then (re-armed) closing: a cancel scope cannot end
            # inside the SDK's `async with`, whose task groups it would cut across.
            with anyio.CancelScope(deadline=anyio.current_time() + self.timeout_s) as bound:
                transport = streamable_http_client(self.url, http_client=http2)
                async with Client(
                    transport, mode=self._mode, cache=None, client_info=_CLIENT_INFO
                ) as client:
                    bound.deadline = math.inf
                    connected.set_result(None)
                    async for call in calls:
                        await self._run(call, client)
                    bound.deadline = anyio.current_time() + CLOSE_TIMEOUT_S
            if not connected.done():
                raise TimeoutError  # `bound` ran out while connecting

    async def _run(self, call: _Call, client: Client) -> None:
        """One call under its deadline; a transport failure cancels it and ends `_hold`."""
        self._current, self._http_status = call, None
        try:
            with anyio.fail_after(call.timeout_s):
                value = await call.run(client)
        except Exception as exc:
            call.outcome.set_exception(self._error(exc, call.timeout_s, call.doing))
        else:
            call.outcome.set_result(value)
        self._current = None

    async def _list_all(self, client: Client) -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(_MAX_LIST_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools

    def _http2_client(self) -> httpx2.AsyncClient:
        # The SDK's own defaults (30 s, 300 s read) apply only to a client it makes itself:
        # bound this one here. The read timeout outlasts a call's deadline, so a slow tool
        # ends by our deadline (the connection lives on), not by a transport error.
        async def note_status(response: httpx2.Response) -> None:
            if response.status_code >= 400 and response.request.method == "POST":
                self._http_status = response.status_code

        return httpx2.AsyncClient(
            transport=AsyncGuardedBridge(self._http),
            headers=self._headers,
            timeout=httpx2.Timeout(self.timeout_s, read=self.timeout_s + _GRACE_S),
            event_hooks={"response": [note_status]},
            follow_redirects=False,  # the SDK follows same-origin redirects itself
            trust_env=False,
        )

    # -- errors --------------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"MCP server {self.host}"

    def _redact(self, message: str) -> str:
        """`message` without any header value (a server may echo what it was sent)."""
        for value in self._headers.values():
            for secret in (value, value.partition(" ")[2]):
                if len(secret) >= 4:
                    message = message.replace(secret, "***")
        return message

    def _error(self, exc: BaseException, timeout_s: float, doing: str) -> DriverError:
        """One of our errors for whatever the SDK raised (groups unwrapped)."""
        cause = _telling_cause(exc)
        where = self._where
        error: DriverError
        if isinstance(cause, BlockedDestination):
            error = BlockedDestination(f"{where}: refused by the SSRF guard: {cause}")
        elif isinstance(cause, RetryableDriverError):
            error = RetryableDriverError(f"{where}: {cause}")
        elif isinstance(cause, DriverError):  # the guard's size cap, ...
            error = PermanentDriverError(f"{where}: {cause}")
        elif isinstance(cause, httpx2.TimeoutException):
            error = RetryableDriverError(f"{where}: timed out while {doing}")
        elif isinstance(cause, httpx2.TransportError):
            error = RetryableDriverError(f"{where}: could not reach the server ({cause})")
        elif isinstance(cause, MCPError):
            error = self._answered(cause)
        elif isinstance(cause, TimeoutError):
            error = RetryableDriverError(f"{where}: no answer within {timeout_s:g} s while {doing}")
        else:
            error = PermanentDriverError(f"{where}: {type(cause).__name__}: {cause}")
        return type(error)(self._redact(str(error)))

    def _answered(self, exc: MCPError) -> DriverError:
        """The error for a JSON-RPC error, or the SDK's stand-in for an HTTP error status."""
        where, status = self._where, self._http_status
        if status in (401, 403):
            return PermanentDriverError(f"{where}: the credential was refused (HTTP {status})")
        if status is not None and _transient(status):
            return RetryableDriverError(f"{where}: the server answered HTTP {status}")
        if status is not None:
            return PermanentDriverError(
                f"{where}: the server answered HTTP {status}: {_clip(exc.message)}"
            )
        return PermanentDriverError(f"{where}: protocol error: {_clip(exc.message)}")


def _clip(message: str, limit: int = 300) -> str:
    """A server's error message, short enough for an error (pydantic's run to pages)."""
    line = message.strip().splitlines()[0] if message.strip() else "(no message)"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _transient(status: int) -> bool:
    return status in (408, 429) or status >= 500


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _telling_cause(exc: BaseException) -> BaseException:
    """The exception that says most about a failure: the SDK wraps the transport's error
    (our guard's, a timeout) in ExceptionGroups, next to cancellations it caused."""
    cancelled = anyio.get_cancelled_exc_class()
    leaves = [leaf for leaf in _leaves(exc) if not isinstance(leaf, cancelled)] or [exc]
    for kind in (DriverError, httpx2.TransportError, MCPError, TimeoutError):
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    return leaves[0]


def _result(result: types.CallToolResult) -> RemoteResult:
    texts = [
        block.text if isinstance(block, types.TextContent) else f"[{block.type} content]"
        for block in result.content
    ]
    structured = result.structured_content
    text = "\n".join(texts)
    if not text and structured is not None:
        text = json.dumps(structured)
    return RemoteResult(not result.is_error, text, structured)
