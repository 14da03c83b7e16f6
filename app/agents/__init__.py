"""The agent service ("Custom MCP LLM"): agents with their own LLM config, personality and memory.

- `store`: the stored agents (CRUD), validated by `schemas`, and the agents exposed at /mcp;
- `prompt`: personality -> system prompt;
- `memory`, `summary`, `cache`: memory per (agent, session), Redis in front of PostgreSQL;
- `profiles`: agent configs, cached;
- `service`: one conversation turn (`AgentService.converse`).
"""

from app.agents.schemas import (
    DEFAULT_MODELS,
    AgentTool,
    AgentTools,
    LLMConfig,
    McpServerTool,
    PersonalityTraits,
    WorkflowTool,
)
from app.agents.store import (
    AgentConfigInvalid,
    ExposedAgent,
    agent_to_dict,
    create_agent,
    delete_agent,
    get_agent,
    list_agents,
    list_exposed_agents,
    update_agent,
)

__all__ = [
    "DEFAULT_MODELS",
    "AgentConfigInvalid",
    "AgentTool",
    "AgentTools",
    "ExposedAgent",
    "LLMConfig",
    "McpServerTool",
    "PersonalityTraits",
    "WorkflowTool",
    "agent_to_dict",
    "create_agent",
    "delete_agent",
    "get_agent",
    "list_agents",
    "list_exposed_agents",
    "update_agent",
]
