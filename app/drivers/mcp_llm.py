"""The `mcp_llm` node: a message to an agent, with its personality and its memory.

The agent is params.agent_id or the workflow's; the conversation is params.session_id, or one
per run (`run-<run_id>`), so the nodes of one run talk in one conversation and concurrent runs
never wait on each other's session lock. Naming a session (e.g. `{{ trigger.customer_id }}`)
shares it with POST /api/mcp/process and with other runs.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.agents.schemas import AGENT_ID_PATTERN, SESSION_ID_MAX, SESSION_ID_PATTERN
from app.drivers.base import Driver, NodeContext
from app.drivers.llm_generation import require_agents
from app.errors import NotFound, PermanentDriverError


class McpLlmDriver(Driver):
    """Talk to an agent: its reply is remembered in the session like any conversation turn."""

    type = "mcp_llm"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

        prompt: str = Field(min_length=1, max_length=200_000)
        session_id: str | None = Field(
            None, min_length=1, max_length=SESSION_ID_MAX, pattern=SESSION_ID_PATTERN
        )
        #: Another agent than the workflow's.
        agent_id: str | None = Field(None, min_length=1, max_length=128, pattern=AGENT_ID_PATTERN)

    def run(self, params: Params, ctx: NodeContext) -> dict[str, Any]:
        agents = require_agents(ctx, self.type)
        agent_id = params.agent_id or ctx.agent_id
        if agent_id is None:
            raise PermanentDriverError(
                "mcp_llm needs an agent: set the workflow's agent_id or params.agent_id"
            )
        session_id = params.session_id or f"run-{ctx.run_id}"
        # One turn per node of a run: another attempt resumes it from its last tool result.
        node_key = hashlib.sha256(f"{ctx.run_id}:{ctx.node_id}".encode()).hexdigest()[:40]
        try:
            reply = agents.converse(agent_id, session_id, params.prompt, turn_id=f"node-{node_key}")
        except NotFound as exc:
            raise PermanentDriverError(str(exc)) from None
        output: dict[str, Any] = {
            **reply.completion.to_output(),
            "agent_id": agent_id,
            "session_id": session_id,
            "memory_size": reply.memory_size,
            "tool_calls": reply.tool_calls,
        }
        if reply.stopped is not None:
            output["stopped"] = reply.stopped
        return output
