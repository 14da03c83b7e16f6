"""Agents over HTTP: the seed's POST /api/agent/create and the /api/agents resource."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.agents import AgentConfigInvalid, AgentTools, LLMConfig, PersonalityTraits, store
from app.agents.schemas import AGENT_ID_PATTERN
from app.web.api import endpoint, fields_never_null
from app.web.context import web_context
from app.web.errors import ApiError
from app.web.schemas import AgentList, AgentOut, respond

bp = Blueprint("agents", __name__)


class AgentCreate(BaseModel):
    """A new agent; `agent_id` is made from the name when left out."""

    model_config = ConfigDict(extra="forbid")

    agent_id: str | None = Field(None, min_length=1, max_length=128, pattern=AGENT_ID_PATTERN)
    agent_name: str = Field(min_length=1, max_length=256)
    llm_config: LLMConfig = Field(default_factory=LLMConfig)
    personality_traits: PersonalityTraits = Field(default_factory=PersonalityTraits)
    tools: AgentTools = Field(
        default_factory=list,
        description="Workflows ({type: workflow, workflow_id}) and remote MCP servers ({type: mcp,"
        " url, credential, allow}) the agent may call; each workflow needs a `tool` block.",
    )
    expose_as_tool: bool = Field(
        False, description="Serve the agent at /mcp as the tool `ask_<agent_id>`."
    )


class AgentPatch(BaseModel):
    """The fields to change; each one given replaces the stored value whole (`tools`: the list)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=fields_never_null)

    agent_name: str | None = Field(None, min_length=1, max_length=256)
    llm_config: LLMConfig | None = None
    personality_traits: PersonalityTraits | None = None
    tools: AgentTools | None = None
    expose_as_tool: bool | None = None

    @field_validator(
        "agent_name", "llm_config", "personality_traits", "tools", "expose_as_tool", mode="before"
    )
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value


@contextmanager
def _as_422() -> Iterator[None]:
    """The store's checks against the database, answered like the body's own (app/web/api.py
    `validate`): a 422 listing every problem with its path."""
    try:
        yield
    except AgentConfigInvalid as exc:
        problems = [problem.to_dict() for problem in exc.problems]
        fields = ", ".join(sorted({problem["path"] for problem in problems}))
        raise ApiError(
            422, "validation_failed", f"invalid fields: {fields}", {"problems": problems}
        ) from None


def _create(body: AgentCreate) -> Response:
    with web_context().sessions.begin() as session, _as_422():
        agent = store.create_agent(
            session,
            agent_id=body.agent_id,
            agent_name=body.agent_name,
            llm_config=body.llm_config,
            personality_traits=body.personality_traits,
            tools=body.tools,
            expose_as_tool=body.expose_as_tool,
        )
        shaped = store.agent_to_dict(agent)
    response = respond(AgentOut, shaped, 201)
    response.headers["Location"] = f"/api/agents/{shaped['agent_id']}"
    return response


@endpoint(
    bp,
    "/api/agent/create",
    method="POST",
    summary="Create an agent (the seed's path)",
    auth="admin",
    body=AgentCreate,
    responses={201: AgentOut, 409: None},
)
def create_agent_seed(body: AgentCreate) -> ResponseReturnValue:
    return _create(body)


@endpoint(
    bp,
    "/api/agents",
    method="POST",
    summary="Create an agent",
    auth="admin",
    body=AgentCreate,
    responses={201: AgentOut, 409: None},
)
def create_agent(body: AgentCreate) -> ResponseReturnValue:
    return _create(body)


@endpoint(bp, "/api/agents", summary="List agents", responses={200: AgentList})
def list_agents() -> ResponseReturnValue:
    with web_context().sessions() as session:
        agents = [store.agent_to_dict(agent) for agent in store.list_agents(session)]
    return respond(AgentList, {"agents": agents})


@endpoint(bp, "/api/agents/<agent_id>", summary="Read an agent", responses={200: AgentOut})
def get_agent(agent_id: str) -> ResponseReturnValue:
    with web_context().sessions() as session:
        shaped = store.agent_to_dict(store.get_agent(session, agent_id))
    return respond(AgentOut, shaped)


@endpoint(
    bp,
    "/api/agents/<agent_id>",
    method="PATCH",
    summary="Change an agent's name, LLM config, personality or tools",
    auth="admin",
    body=AgentPatch,
    responses={200: AgentOut},
)
def update_agent(agent_id: str, body: AgentPatch) -> ResponseReturnValue:
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    context = web_context()
    with context.sessions.begin() as session, _as_422():
        shaped = store.agent_to_dict(store.update_agent(session, agent_id, **changes))
    context.agents.forget_agent(agent_id)  # after the commit: the next turn reads the change
    return respond(AgentOut, shaped)


@endpoint(
    bp,
    "/api/agents/<agent_id>",
    method="DELETE",
    summary="Delete an agent and its memory",
    auth="admin",
    responses={204: None},
)
def delete_agent(agent_id: str) -> ResponseReturnValue:
    context = web_context()
    with context.sessions.begin() as session:
        store.delete_agent(session, agent_id)
    context.agents.forget_agent(agent_id, deleted=True)
    return Response(status=204)
