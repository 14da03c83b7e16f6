"""Agents in `agent_mcps`: create, read, list, change, delete.

Functions take a session and never commit, so a request is one transaction. Configs are
validated by `app.agents.schemas` before they are stored, so what is read back is always valid.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.agents.schemas import LLMConfig, PersonalityTraits, slugify
from app.errors import Conflict, NotFound
from app.models import AgentMCP, utcnow

#: A field left out of `update_agent` keeps its stored value.
_UNCHANGED: Any = object()


def create_agent(
    session: Session,
    *,
    agent_name: str,
    agent_id: str | None = None,
    llm_config: LLMConfig | None = None,
    personality_traits: PersonalityTraits | None = None,
) -> AgentMCP:
    """A new agent; Conflict when `agent_id` is taken. Without an id, one is made from the name."""
    agent_id = agent_id or new_agent_id(agent_name)
    if session.get(AgentMCP, agent_id) is not None:
        raise Conflict(f"an agent with id {agent_id!r} already exists")
    now = utcnow()
    agent = AgentMCP(
        agent_id=agent_id,
        agent_name=agent_name,
        llm_config=_dump_llm_config(llm_config or LLMConfig()),
        personality_traits=_dump_traits(personality_traits or PersonalityTraits()),
        created_at=now,
        updated_at=now,
    )
    try:
        # A savepoint: losing a race with a concurrent create is a 409, not a broken transaction.
        with session.begin_nested():
            session.add(agent)
    except IntegrityError:
        raise Conflict(f"an agent with id {agent_id!r} already exists") from None
    return agent


def get_agent(session: Session, agent_id: str) -> AgentMCP:
    agent = session.get(AgentMCP, agent_id)
    if agent is None:
        raise NotFound(f"no agent with id {agent_id!r}")
    return agent


def list_agents(session: Session) -> list[AgentMCP]:
    """Every agent, oldest first (agents are few; no paging)."""
    return list(session.scalars(select(AgentMCP).order_by(AgentMCP.created_at, AgentMCP.agent_id)))


def update_agent(
    session: Session,
    agent_id: str,
    *,
    agent_name: str = _UNCHANGED,
    llm_config: LLMConfig = _UNCHANGED,
    personality_traits: PersonalityTraits = _UNCHANGED,
) -> AgentMCP:
    """Replace the fields given (each one whole); the others keep their stored values."""
    # FOR NO KEY UPDATE: no key changes, so turns inserting messages (a key-share lock on this
    # row, through their foreign key) neither wait for the update nor deadlock with it.
    agent = session.get(AgentMCP, agent_id, with_for_update={"key_share": True})
    if agent is None:
        raise NotFound(f"no agent with id {agent_id!r}")
    if agent_name is not _UNCHANGED:
        agent.agent_name = agent_name
    if llm_config is not _UNCHANGED:
        agent.llm_config = _dump_llm_config(llm_config)
    if personality_traits is not _UNCHANGED:
        agent.personality_traits = _dump_traits(personality_traits)
    agent.updated_at = utcnow()
    session.flush()
    return agent


def delete_agent(session: Session, agent_id: str) -> None:
    """Delete the agent and its messages; workflows that named it keep running without one."""
    agent = get_agent(session, agent_id)
    session.delete(agent)
    session.flush()


def agent_to_dict(agent: AgentMCP) -> dict[str, Any]:
    return {
        "agent_id": agent.agent_id,
        "agent_name": agent.agent_name,
        "llm_config": agent.llm_config,
        "personality_traits": agent.personality_traits,
        "created_at": _iso(agent.created_at),
        "updated_at": _iso(agent.updated_at),
    }


def new_agent_id(agent_name: str) -> str:
    """`sales-assistant-3f9a1c2e`: readable, slug-safe, and unlikely to collide."""
    return f"{slugify(agent_name) or 'agent'}-{secrets.token_hex(4)}"


def _dump_llm_config(config: LLMConfig) -> dict[str, Any]:
    """Every setting, defaults filled in: what the agent will really use."""
    return config.model_dump(mode="json", exclude_none=True)


def _dump_traits(traits: PersonalityTraits) -> dict[str, Any]:
    """What was written, nothing added: it becomes the system prompt."""
    return traits.model_dump(mode="json", exclude_defaults=True)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
