"""The Model Context Protocol's client side: agents call the tools of remote MCP servers.

The server side (MCP clients call our workflows and agents at /mcp) is a front end, so it lives
with the web (app/web/mcp_server.py, app/web/mcp_mount.py): this package sits below the agents.
"""

from app.mcp.client import (
    McpToolClient,
    RemoteResult,
    RemoteServer,
    RemoteTool,
    credential_headers,
)

__all__ = ["McpToolClient", "RemoteResult", "RemoteServer", "RemoteTool", "credential_headers"]
