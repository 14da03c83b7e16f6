"""The Model Context Protocol both ways: agents call remote tools (client), MCP clients call
our workflows and agents (server)."""

from app.mcp.client import (
    McpToolClient,
    RemoteResult,
    RemoteServer,
    RemoteTool,
    credential_headers,
)

__all__ = ["McpToolClient", "RemoteResult", "RemoteServer", "RemoteTool", "credential_headers"]
