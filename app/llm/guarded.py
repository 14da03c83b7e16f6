"""The SSRF guard for SDKs built on httpx2 (the anthropic and MCP SDKs accept no httpx client).

A bridge transport hands each httpx2 request to the one SSRF-guarded httpx client
(app/safe_http.py) and hands the answer back, so there is still exactly one guard: the same
address checks, redirect re-checks and size cap. Transport errors keep their kind (a timeout
stays a timeout), so the SDK's retries behave as with its own client.

`GuardedBridge` serves sync httpx2 clients (anthropic); `AsyncGuardedBridge` serves
`httpx2.AsyncClient` (the MCP SDK) by running the same guarded call in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio.to_thread
import httpx
import httpx2

from app.errors import DriverError

__all__ = ["AsyncGuardedBridge", "GuardedBridge", "guarded_httpx2_client"]

Refusal = Callable[[DriverError], Exception]


def _send_guarded(
    client: httpx.Client,
    request: httpx2.Request,
    content: bytes,
    refusal: Refusal | None,
    follow_redirects: bool | None,
) -> httpx2.Response:
    """Send `request` through the guarded `client`; the whole (capped) body is read here."""
    timeout: Any = request.extensions.get("timeout")
    outgoing = client.build_request(
        request.method,
        str(request.url),
        headers=list(request.headers.raw),
        content=content,
        timeout=httpx.Timeout(**timeout) if isinstance(timeout, dict) else None,
    )
    try:
        if follow_redirects is None:
            response = client.send(outgoing)
        else:
            response = client.send(outgoing, follow_redirects=follow_redirects)
    except DriverError as exc:
        if refusal is None:
            raise
        raise refusal(exc) from exc
    except httpx.TransportError as exc:
        kind = getattr(httpx2, type(exc).__name__, None)
        if not (isinstance(kind, type) and issubclass(kind, httpx2.TransportError)):
            kind = httpx2.TransportError
        raise kind(str(exc), request=request) from exc
    return httpx2.Response(
        response.status_code,
        headers=list(response.headers.raw),
        content=response.content,
        request=request,
    )


class GuardedBridge(httpx2.BaseTransport):
    """httpx2 in front, the guarded httpx client behind.

    `refusal` turns the guard's own errors (a refused address, a body over the cap) into an
    exception the SDK passes through unretried; a plain one it would wrap and retry.
    """

    def __init__(self, client: httpx.Client, refusal: Refusal | None = None) -> None:
        self._client = client
        self._refusal = refusal

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        return _send_guarded(self._client, request, request.read(), self._refusal, None)


class AsyncGuardedBridge(httpx2.AsyncBaseTransport):
    """An `httpx2.AsyncClient` in front, the guarded (sync) httpx client behind, in a thread.

    The guarded client reads the whole body, capped at `http_max_response_bytes`, before the
    answer is handed back: right for request/response traffic such as MCP tool calls, where a
    JSON answer or an SSE stream that ends with the response is one bounded body; a stream that
    never ends (a legacy MCP session's GET channel) ends at the read timeout instead.

    Redirects are left to the caller (the MCP SDK follows same-origin ones itself and refuses
    others); each hop comes back through this bridge and so through the guard. A cancelled
    caller abandons its thread, which then ends at the request's own timeout.
    """

    def __init__(self, client: httpx.Client, refusal: Refusal | None = None) -> None:
        self._client = client
        self._refusal = refusal

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        content = await request.aread()
        return await anyio.to_thread.run_sync(
            _send_guarded,
            self._client,
            request,
            content,
            self._refusal,
            False,
            abandon_on_cancel=True,
        )


def guarded_httpx2_client(client: httpx.Client, refusal: Refusal | None = None) -> httpx2.Client:
    """An httpx2 client whose every request goes through `client` (redirects included)."""
    bridge = GuardedBridge(client, refusal)
    return httpx2.Client(transport=bridge, follow_redirects=False, trust_env=False)
