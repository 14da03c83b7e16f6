"""The agent service: one conversation turn, end to end (DESIGN.md: Agents).

A turn reads the agent's profile (cached), takes the session's lock, loads its memory window,
asks the agent's LLM with the personality as the system prompt, and only when that succeeded
stores the whole turn. A failed LLM call writes nothing.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from app.agents.cache import Cache, make_cache
from app.agents.memory import Memory, Window
from app.agents.profiles import AgentProfile, AgentProfiles
from app.config import Settings
from app.llm import ChatMessage, Completion, LLMProviders

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

#: Worst-case backoff the SDKs add between retries (their cap is 8 s).
_MAX_BACKOFF_S = 8.0


@dataclass(frozen=True)
class Reply:
    """An agent's answer to one message (DESIGN.md: an agent's reply)."""

    agent_id: str
    session_id: str
    completion: Completion
    #: Messages stored for the session after this turn, both roles.
    memory_size: int

    def to_dict(self) -> dict[str, object]:
        return {
            "agent_id": self.agent_id,
            "session_id": self.session_id,
            "reply": self.completion.text,
            "memory_size": self.memory_size,
            "provider": self.completion.provider,
            "model": self.completion.model,
            "usage": dict(self.completion.usage),
        }


def new_session_id() -> str:
    """A fresh conversation's id, for a message that names none."""
    return "session-" + secrets.token_hex(8)


class AgentService:
    """Agents' conversations: profiles, memory and LLM calls of one process."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        cache: Cache,
        llm: LLMProviders,
    ) -> None:
        self.settings = settings
        self.llm = llm
        self.profiles = AgentProfiles(sessions, cache, settings.agent_config_ttl_s)
        # A turn holds its session's lock for as long as its LLM call may take, retries included.
        turn_budget_s = (
            settings.llm_timeout_s * (settings.llm_max_retries + 1)
            + _MAX_BACKOFF_S * settings.llm_max_retries
            + 30
        )
        self.memory = Memory(
            sessions,
            cache,
            window_turns=settings.agent_memory_turns,
            ttl_s=settings.agent_memory_ttl_s,
            lock_ttl_s=turn_budget_s,
            lock_wait_s=turn_budget_s,
        )

    def converse(self, agent_id: str, session_id: str, message: str) -> Reply:
        """One turn: the agent answers `message` with its memory of the session."""
        profile = self.profiles.get(agent_id)
        with self.memory.lock(agent_id, session_id):
            window = self.memory.load(agent_id, session_id)
            completion = self.ask(profile, window, message)
            _, size = self.memory.append(agent_id, session_id, window, message, completion.text)
        return Reply(agent_id, session_id, completion, size)

    def ask(self, profile: AgentProfile, window: Window, message: str) -> Completion:
        """The agent's LLM, given its personality, the remembered turns and the new message."""
        messages = [*window.messages(), ChatMessage("user", message)]
        return self.llm.complete(
            messages, profile.system_prompt(window.summary), profile.llm_config
        )

    def forget_agent(self, agent_id: str, *, deleted: bool = False) -> None:
        """After the commit that changed (or deleted) an agent: drop what is cached of it.
        Never raises: the change is committed, and the config cache's TTL bounds staleness."""
        try:
            self.profiles.forget(agent_id)
            if deleted:
                self.memory.forget_cached(agent_id)
        except Exception:
            log.warning("could not drop the cached config of agent %s", agent_id, exc_info=True)

    def close(self) -> None:
        self.llm.close()


def make_agent_service(
    settings: Settings, sessions: sessionmaker[Session], http: httpx.Client | None
) -> AgentService:
    """Production wiring: the configured cache (Redis, or in-process) and the providers, whose
    config-named servers are reached through `http`, the SSRF-guarded client."""
    cache = make_cache(settings.memory_cache_url)
    return AgentService(settings, sessions, cache, LLMProviders(settings, http))
