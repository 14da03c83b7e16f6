"""Talking to agents over HTTP: the seed's POST /api/mcp/process, and a session's memory.

The LLM call runs on a worker (dualmcp.agent_process); the view waits for it up to
DUALMCP_AGENT_REPLY_WAIT_S, or answers 202 at once with `"async": true`. Either 202 carries a
status URL that answers with the reply once it is there.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field

from app.agents.replies import AgentTasks, TaskOutcome
from app.agents.schemas import AGENT_ID_PATTERN, SESSION_ID_MAX, SESSION_ID_PATTERN
from app.agents.service import new_session_id
from app.web.api import endpoint
from app.web.context import web_context
from app.web.errors import RETRY_AFTER_S, ApiError, unavailable
from app.web.schemas import AgentMemory, AgentReply, AgentReplyPending, respond

bp = Blueprint("conversations", __name__)


def _session_id(default: Any = ...) -> Any:
    return Field(default, min_length=1, max_length=SESSION_ID_MAX, pattern=SESSION_ID_PATTERN)


class ProcessRequest(BaseModel):
    """A message to an agent; without `session_id` a new conversation starts."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    agent_id: str = Field(min_length=1, max_length=128, pattern=AGENT_ID_PATTERN)
    message: str = Field(min_length=1, max_length=100_000)
    session_id: str | None = _session_id(None)
    #: Answer 202 with a status URL at once instead of waiting for the reply.
    async_: bool = Field(False, alias="async")


class MemoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: str = _session_id()
    #: The newest `limit` messages (returned oldest first).
    limit: int = Field(100, ge=1, le=1000)


class MemoryDeleteQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: One session; every session of the agent when left out.
    session_id: str | None = _session_id(None)


@endpoint(
    bp,
    "/api/mcp/process",
    method="POST",
    summary="Send a message to an agent; its reply, with the session's memory updated",
    auth="invoke",
    body=ProcessRequest,
    responses={200: AgentReply, 202: AgentReplyPending, 404: None, 502: None},
)
def process_message(body: ProcessRequest) -> ResponseReturnValue:
    context = web_context()
    context.agents.profiles.get(body.agent_id)  # 404 now, not from the worker
    session_id = body.session_id or new_session_id()
    tasks = _tasks()
    task_id = tasks.submit(body.agent_id, session_id, body.message)
    pending = {"task_id": task_id, "agent_id": body.agent_id, "session_id": session_id}
    if body.async_:
        return _pending(pending, "queued")
    outcome = tasks.outcome(task_id, context.settings.agent_reply_wait_s)
    return _answer(outcome, pending)


@endpoint(
    bp,
    "/api/mcp/process/<task_id>",
    summary="The reply to a message sent with POST /api/mcp/process, once it is there",
    responses={200: AgentReply, 202: AgentReplyPending, 502: None},
)
def process_status(task_id: str) -> ResponseReturnValue:
    outcome = _tasks().outcome(task_id, 0)
    if outcome.state == "unknown":
        raise ApiError(404, "not_found", f"no message {task_id!r} (replies are kept for an hour)")
    whom = {"agent_id": outcome.agent_id, "session_id": outcome.session_id}
    return _answer(outcome, {"task_id": task_id, **whom})


@endpoint(
    bp,
    "/api/agents/<agent_id>/memory",
    summary="A session's stored messages, oldest first, and its rolling summary",
    query=MemoryQuery,
    responses={200: AgentMemory},
)
def get_memory(agent_id: str, query: MemoryQuery) -> ResponseReturnValue:
    agents = web_context().agents
    agents.profiles.get(agent_id)
    messages = agents.memory.history(agent_id, query.session_id, query.limit)
    window = agents.memory.load(agent_id, query.session_id)
    shaped = {
        "agent_id": agent_id,
        "session_id": query.session_id,
        "messages": messages,
        "summary": window.summary,
    }
    return respond(AgentMemory, shaped)


@endpoint(
    bp,
    "/api/agents/<agent_id>/memory",
    method="DELETE",
    summary="Forget a session (or, without session_id, every session of the agent)",
    auth="admin",
    query=MemoryDeleteQuery,
    responses={204: None},
)
def delete_memory(agent_id: str, query: MemoryDeleteQuery) -> ResponseReturnValue:
    agents = web_context().agents
    agents.profiles.get(agent_id)
    agents.memory.clear(agent_id, query.session_id)
    return Response(status=204)


def _tasks() -> AgentTasks:
    tasks = web_context().agent_tasks
    if tasks is None:
        raise unavailable("the agent worker queue")
    return tasks


def _answer(outcome: TaskOutcome, pending: dict[str, Any]) -> ResponseReturnValue:
    if outcome.state != "done":
        return _pending(pending, "running" if outcome.state == "running" else "queued")
    result = outcome.result or {}
    if "reply" in result:
        return respond(AgentReply, result["reply"])
    error = result.get("error") or {}
    status = int(error.get("status", 500))
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    raise ApiError(
        status,
        str(error.get("code", "internal_error")),
        str(error.get("message", "the agent could not answer")),
        headers=headers,
    )


def _pending(pending: dict[str, Any], status: str) -> Response:
    status_url = f"/api/mcp/process/{pending['task_id']}"
    response = respond(AgentReplyPending, {**pending, "status": status, "status_url": status_url})
    response.status_code = 202
    response.headers["Location"] = status_url
    return response
