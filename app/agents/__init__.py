"""The agent service ("Custom MCP LLM"): agents with their own LLM config and personality.

This holds the stored side (CRUD); memory and the LLM call build on it.
"""

from app.agents.schemas import DEFAULT_MODELS, LLMConfig, PersonalityTraits
from app.agents.store import (
    agent_to_dict,
    create_agent,
    delete_agent,
    get_agent,
    list_agents,
    update_agent,
)

__all__ = [
    "DEFAULT_MODELS",
    "LLMConfig",
    "PersonalityTraits",
    "agent_to_dict",
    "create_agent",
    "delete_agent",
    "get_agent",
    "list_agents",
    "update_agent",
]
