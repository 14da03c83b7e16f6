"""Agent configs as a turn needs them, cached (DESIGN.md: agent configs are cached too).

Cache-aside with a TTL: read from the cache, else from PostgreSQL and cached. An update or a
delete drops the entry after its commit (`forget`), so the next turn reads the new config; the
TTL bounds what a reader racing that commit could leave behind.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.agents.cache import Cache
from app.agents.prompt import build_system_prompt
from app.agents.schemas import AgentTool, LLMConfig, PersonalityTraits, dump_tools, parse_tools
from app.agents.store import get_agent

log = logging.getLogger(__name__)

KEY_PREFIX = "dualmcp:agent:"


@dataclass(frozen=True)
class AgentProfile:
    """What a turn needs of an agent: who it is, which LLM answers for it, what it may call."""

    agent_id: str
    agent_name: str
    llm_config: LLMConfig
    personality: PersonalityTraits
    #: Workflows and MCP servers the agent may call, as configured (validated on save).
    tools: tuple[AgentTool, ...] = ()
    #: Served at /mcp as `ask_<agent_id>`.
    expose_as_tool: bool = False

    def system_prompt(self, summary: str = "") -> str:
        traits = self.personality.model_dump(mode="json", exclude_defaults=True)
        return build_system_prompt(self.agent_name, traits, summary)

    def to_json(self) -> str:
        return json.dumps(
            {
                "agent_id": self.agent_id,
                "agent_name": self.agent_name,
                "llm_config": self.llm_config.model_dump(mode="json"),
                "personality_traits": self.personality.model_dump(
                    mode="json", exclude_defaults=True
                ),
                "tools": dump_tools(self.tools),
                "expose_as_tool": self.expose_as_tool,
            }
        )

    @classmethod
    def from_stored(
        cls,
        agent_id: str,
        agent_name: str,
        llm_config: object,
        traits: object,
        tools: object = (),
        expose_as_tool: object = False,
    ) -> AgentProfile:
        return cls(
            agent_id,
            agent_name,
            LLMConfig.model_validate(llm_config),
            PersonalityTraits.model_validate(traits),
            tuple(parse_tools(tools)),
            bool(expose_as_tool),
        )

    @classmethod
    def from_cached(cls, agent_id: str, data: dict[str, Any]) -> AgentProfile:
        """A profile from `to_json`'s output, also one written before agents had tools."""
        return cls.from_stored(
            agent_id,
            data["agent_name"],
            data["llm_config"],
            data["personality_traits"],
            data.get("tools", []),
            data.get("expose_as_tool", False),
        )


class AgentProfiles:
    """Agent id -> AgentProfile, through the cache."""

    def __init__(self, sessions: sessionmaker[Session], cache: Cache, ttl_s: int) -> None:
        self._sessions = sessions
        self._cache = cache
        self._ttl_s = ttl_s

    def get(self, agent_id: str) -> AgentProfile:
        """The agent's profile; NotFound when there is no such agent."""
        cached = self._cache.get(KEY_PREFIX + agent_id)
        if cached is not None:
            data = json.loads(cached)
            # An entry written before agents had tools is stale, not "no tools": read it again.
            if "tools" in data:
                return AgentProfile.from_cached(agent_id, data)
        with self._sessions() as session:
            agent = get_agent(session, agent_id)
            profile = AgentProfile.from_stored(
                agent.agent_id,
                agent.agent_name,
                agent.llm_config,
                agent.personality_traits,
                agent.tools,
                agent.expose_as_tool,
            )
        self._cache.set(KEY_PREFIX + agent_id, profile.to_json(), self._ttl_s)
        return profile

    def forget(self, agent_id: str) -> None:
        """Drop the cached profile (after the commit that changed or deleted the agent)."""
        self._cache.delete(KEY_PREFIX + agent_id)
