"""Agents in `agent_mcps`: create, read, list, change, delete.

Functions take a session and never commit, so a request is one transaction. Configs are
validated by `app.agents.schemas` before they are stored, and what only the database can tell
(a workflow tool names a workflow that is a tool) is checked here, so what is read back is valid.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.agents.schemas import (
    ASK_TOOL_NAME_PATTERN,
    AgentTool,
    LLMConfig,
    PersonalityTraits,
    WorkflowTool,
    ask_tool_name,
    dump_tools,
    slugify,
)
from app.engine.validation import Problem
from app.errors import Conflict, DualMCPError, NotFound
from app.models import AgentMCP, Workflow, utcnow

#: A field left out of `update_agent` keeps its stored value.
_UNCHANGED: Any = object()


class AgentConfigInvalid(DualMCPError):
    """The config names what the database does not hold; `problems` lists each one, its path
    a field of the agent as the API takes it (`tools.1.workflow_id`)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("invalid fields: " + ", ".join(problem.path for problem in problems))


class ExposedAgent(NamedTuple):
    """An agent served at /mcp as `ask_<agent_id>`; `description` is its personality's role."""

    agent_id: str
    agent_name: str
    description: str


def create_agent(
    session: Session,
    *,
    agent_name: str,
    agent_id: str | None = None,
    llm_config: LLMConfig | None = None,
    personality_traits: PersonalityTraits | None = None,
    tools: Sequence[AgentTool] = (),
    expose_as_tool: bool = False,
) -> AgentMCP:
    """A new agent; Conflict when `agent_id` is taken, AgentConfigInvalid when a tool names
    no usable workflow. Without an id, one is made from the name."""
    agent_id = agent_id or new_agent_id(agent_name)
    if session.get(AgentMCP, agent_id) is not None:
        raise Conflict(f"an agent with id {agent_id!r} already exists")
    _raise_problems(_tool_problems(session, tools) + _exposure_problems(agent_id, expose_as_tool))
    now = utcnow()
    agent = AgentMCP(
        agent_id=agent_id,
        agent_name=agent_name,
        llm_config=_dump_llm_config(llm_config or LLMConfig()),
        personality_traits=_dump_traits(personality_traits or PersonalityTraits()),
        tools=dump_tools(tools),
        expose_as_tool=expose_as_tool,
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
    tools: Sequence[AgentTool] = _UNCHANGED,
    expose_as_tool: bool = _UNCHANGED,
) -> AgentMCP:
    """Replace the fields given (each one whole: `tools` is the new list); the others keep their
    stored values. AgentConfigInvalid when a tool names no usable workflow."""
    # FOR NO KEY UPDATE: no key changes, so turns inserting messages (a key-share lock on this
    # row, through their foreign key) neither wait for the update nor deadlock with it.
    agent = session.get(AgentMCP, agent_id, with_for_update={"key_share": True})
    if agent is None:
        raise NotFound(f"no agent with id {agent_id!r}")
    problems: list[Problem] = []
    if tools is not _UNCHANGED:
        problems += _tool_problems(session, tools)
    if expose_as_tool is not _UNCHANGED:
        problems += _exposure_problems(agent_id, expose_as_tool)
    _raise_problems(problems)
    if agent_name is not _UNCHANGED:
        agent.agent_name = agent_name
    if llm_config is not _UNCHANGED:
        agent.llm_config = _dump_llm_config(llm_config)
    if personality_traits is not _UNCHANGED:
        agent.personality_traits = _dump_traits(personality_traits)
    if tools is not _UNCHANGED:
        agent.tools = dump_tools(tools)
    if expose_as_tool is not _UNCHANGED:
        agent.expose_as_tool = expose_as_tool
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
        "tools": agent.tools or [],
        "expose_as_tool": bool(agent.expose_as_tool),
        "created_at": _iso(agent.created_at),
        "updated_at": _iso(agent.updated_at),
    }


def list_exposed_agents(session: Session) -> list[ExposedAgent]:
    """The agents served at /mcp (`expose_as_tool`), by id: read on each tool list, so a change
    shows up with no restart."""
    rows = session.execute(
        select(AgentMCP.agent_id, AgentMCP.agent_name, AgentMCP.personality_traits)
        .where(AgentMCP.expose_as_tool.is_(True))
        .order_by(AgentMCP.agent_id)
    )
    return [
        ExposedAgent(agent_id, agent_name, _describe(traits or {}))
        for agent_id, agent_name, traits in rows
    ]


def new_agent_id(agent_name: str) -> str:
    """`sales-assistant-3f9a1c2e`: readable, slug-safe, and unlikely to collide."""
    return f"{slugify(agent_name) or 'agent'}-{secrets.token_hex(4)}"


def _dump_llm_config(config: LLMConfig) -> dict[str, Any]:
    """Every setting, defaults filled in: what the agent will really use."""
    return config.model_dump(mode="json", exclude_none=True)


def _dump_traits(traits: PersonalityTraits) -> dict[str, Any]:
    """What was written, nothing added: it becomes the system prompt."""
    return traits.model_dump(mode="json", exclude_defaults=True)


def _tool_problems(session: Session, tools: Sequence[AgentTool]) -> list[Problem]:
    """A workflow tool must name a stored workflow with a `tool` block. A paused one is fine:
    it may be activated later, and a turn offers only the active ones."""
    wanted = {tool.workflow_id for tool in tools if isinstance(tool, WorkflowTool)}
    if not wanted:
        return []
    rows = session.execute(
        select(Workflow.workflow_id, Workflow.tool_name, Workflow.workflow_json).where(
            Workflow.workflow_id.in_(wanted)
        )
    )
    is_tool = {
        workflow_id: tool_name is not None or isinstance((definition or {}).get("tool"), dict)
        for workflow_id, tool_name, definition in rows
    }
    problems: list[Problem] = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, WorkflowTool):
            continue
        path = f"tools.{index}.workflow_id"
        if tool.workflow_id not in is_tool:
            message = f"no workflow with id {tool.workflow_id!r}"
            problems.append(Problem("unknown_workflow", path, message))
        elif not is_tool[tool.workflow_id]:
            message = (
                f"workflow {tool.workflow_id!r} is not a tool: its definition has no `tool` "
                "block ({name, description, input_schema})"
            )
            problems.append(Problem("not_a_tool", path, message))
    return problems


def _exposure_problems(agent_id: str, expose_as_tool: bool) -> list[Problem]:
    """An exposed agent's tool name must suit MCP clients and every provider's tool calling."""
    name = ask_tool_name(agent_id)
    if not expose_as_tool or re.fullmatch(ASK_TOOL_NAME_PATTERN, name):
        return []
    message = (
        f"the agent would be the tool {name!r}, not a valid tool name (letters, digits, '_' "
        "or '-', at most 64 characters): choose a shorter agent id without '.'"
    )
    return [Problem("invalid_tool_name", "expose_as_tool", message)]


def _raise_problems(problems: list[Problem]) -> None:
    if problems:
        raise AgentConfigInvalid(problems)


def _describe(traits: dict[str, Any]) -> str:
    """What the agent is for, from its personality: `role`, else a `description` entry."""
    for key in ("role", "description"):
        value = traits.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
