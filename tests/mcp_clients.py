"""The official MCP SDK client, as tests drive a /mcp endpoint with it: one connection per
call, the API key as a Bearer header (headers and timeouts live on the httpx2 client), in
either protocol generation (`mode="auto"`: the current one; `mode="legacy"`: `initialize`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

T = TypeVar("T")


def mcp_session(
    url: str,
    key: str,
    use: Callable[[Client], Awaitable[T]],
    *,
    mode: str = "auto",
    headers: dict[str, str] | None = None,
    timeout_s: float = 60,
) -> T:
    """Connect with `key` (and any extra `headers`), run `use` with the client, disconnect."""

    async def session() -> T:
        sent = {"Authorization": f"Bearer {key}", **(headers or {})}
        async with (
            httpx2.AsyncClient(headers=sent, timeout=timeout_s) as http,
            Client(streamable_http_client(url, http_client=http), mode=mode) as client,
        ):
            return await use(client)

    return anyio.run(session)


def tool_names(url: str, key: str, mode: str = "auto") -> list[str]:
    async def names(client: Client) -> list[str]:
        return [tool.name for tool in (await client.list_tools()).tools]

    return mcp_session(url, key, names, mode=mode)


def call_tool(
    url: str, key: str, name: str, arguments: dict[str, Any], mode: str = "auto"
) -> types.CallToolResult:
    async def called(client: Client) -> types.CallToolResult:
        return await client.call_tool(name, arguments)

    return mcp_session(url, key, called, mode=mode)


def result_texts(result: types.CallToolResult) -> list[str]:
    """The text blocks of a tool result."""
    return [block.text for block in result.content if isinstance(block, types.TextContent)]
