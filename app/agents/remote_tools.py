"""An agent's remote MCP servers as tools of a turn: connect once per turn with the SDK client
(app/mcp/client.py, through the SSRF guard), list the allowed tools, call them.

The server's key is the agent's stored credential named by the entry (sent as Bearer, or as
`{"header", "value"}`); it goes into the connection's headers and nowhere else.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import httpx

from app.agents.schemas import McpServerTool
from app.agents.toolbox import CallContext, RemoteCall
from app.config import Settings
from app.credentials import CredentialVault
from app.errors import PermanentDriverError
from app.llm import ToolSpec
from app.mcp.client import McpToolClient, credential_headers


class RemoteTools:
    """Opens an agent's remote MCP servers for a turn (the toolbox's RemoteOpener)."""

    def __init__(self, settings: Settings, http: httpx.Client, vault: CredentialVault) -> None:
        self._settings = settings
        self._http = http
        self._vault = vault

    def __call__(
        self, entry: McpServerTool, caller: CallContext, stack: ExitStack
    ) -> tuple[list[ToolSpec], RemoteCall]:
        headers: dict[str, str] = {}
        if entry.credential is not None:
            credential = self._vault.find_for_agent(entry.credential, caller.agent_id)
            if credential is None:
                raise PermanentDriverError(
                    f"agent {caller.agent_id!r} has no credential {entry.credential!r}"
                )
            headers = credential_headers(credential.value)
        client = McpToolClient(
            str(entry.url),
            headers,
            self._http,
            timeout_s=self._settings.agent_tool_timeout_s,
            allow=entry.allow,
        )
        stack.enter_context(client)
        specs = [
            ToolSpec(tool.name, tool.description, tool.input_schema) for tool in client.list_tools()
        ]

        def call(name: str, arguments: dict[str, Any], timeout_s: float) -> tuple[bool, str]:
            result = client.call_tool(name, arguments, timeout_s)
            return result.ok, result.text

        return specs, call
