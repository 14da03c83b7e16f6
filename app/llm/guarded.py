"""The SSRF guard for SDKs built on httpx2 (the anthropic SDK accepts no httpx client).

A bridge transport hands each httpx2 request to the one SSRF-guarded httpx client
(app/safe_http.py) and hands the answer back, so there is still exactly one guard: the same
address checks, redirect re-checks and size cap. Transport errors keep their kind (a timeout
stays a timeout), so the SDK's retries behave as with its own client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import httpx2

from app.errors import DriverError


class GuardedBridge(httpx2.BaseTransport):
    """httpx2 in front, the guarded httpx client behind.

    `refusal` turns the guard's own errors (a refused address, a body over the cap) into an
    exception the SDK passes through unretried; a plain one it would wrap and retry.
    """

    def __init__(
        self,
        client: httpx.Client,
        refusal: Callable[[DriverError], Exception] | None = None,
    ) -> None:
        self._client = client
        self._refusal = refusal

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        timeout: Any = request.extensions.get("timeout")
        outgoing = self._client.build_request(
            request.method,
            str(request.url),
            headers=list(request.headers.raw),
            content=request.read(),
            timeout=httpx.Timeout(**timeout) if isinstance(timeout, dict) else None,
        )
        try:
            response = self._client.send(outgoing)
        except DriverError as exc:
            if self._refusal is None:
                raise
            raise self._refusal(exc) from exc
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


def guarded_httpx2_client(
    client: httpx.Client, refusal: Callable[[DriverError], Exception] | None = None
) -> httpx2.Client:
    """An httpx2 client whose every request goes through `client` (redirects included)."""
    bridge = GuardedBridge(client, refusal)
    return httpx2.Client(transport=bridge, follow_redirects=False, trust_env=False)
