"""Response models shared by the blueprints: the shapes clients rely on (DESIGN.md: HTTP API).

Views build their answer through these models (`respond`), so the OpenAPI document describes
exactly what is sent. Times are ISO 8601 UTC strings, as the services produce them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from flask import Response, jsonify
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from app.agents.schemas import AgentTools
from app.engine.schema import NodeStatus, RunStatus

#: An ISO 8601 UTC time as the services write it (`2026-05-01T12:00:00.123456Z`).
IsoTime = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


def page_cursor(decode: Callable[[str], object]) -> AfterValidator:
    """A query's `cursor` is the `next_cursor` of a previous page: refused (422) when `decode`
    cannot read it (it raises app.workflows.InvalidCursor, a ValueError). Use it as
    `cursor: Annotated[str | None, page_cursor(decode_cursor)] = None`."""

    def check(value: str | None) -> str | None:
        if value is not None:
            decode(value)
        return value

    return AfterValidator(check)


class AttemptOut(BaseModel):
    """An earlier attempt of a node: when it ran and why it did not settle the node (a
    retryable failure, a lost worker, or the failure a resume started again from)."""

    attempt: int
    started_at: IsoTime | None = None
    finished_at: IsoTime | None = None
    error: str | None = None


class NodeRunOut(BaseModel):
    """One node of a run's definition version, with its state in the run and its edges.

    `not_started`: the run has not reached it (yet); `skipped`: a dead path. The columns
    describe the latest attempt; `attempts` the earlier ones, oldest first.
    """

    node_id: str
    type: str
    status: NodeStatus | Literal["not_started"]
    #: Attempts so far (0: not started); a resumed node goes on counting.
    attempt: int
    #: The node's retry policy (`retry.max_attempts`), counted from the run's last resume.
    max_attempts: int = 1
    #: When the next attempt is due, while the node waits for it (`retrying`).
    next_attempt_at: IsoTime | None = None
    attempts: list[AttemptOut] = Field(default_factory=list)
    output: Any = None
    error: str | None = None
    started_at: IsoTime | None = None
    finished_at: IsoTime | None = None
    duration_ms: float | None = None
    #: The definition's edges: `next` as a list of node ids, a conditional's `then`/`else`.
    next: list[str] = Field(default_factory=list)
    then: str | None = None
    else_: str | None = Field(None, alias="else")

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class RunSummary(BaseModel):
    """A run without its nodes."""

    run_id: str
    workflow_id: str
    workflow_version: int
    status: RunStatus
    input: Any = None
    error: str | None = None
    #: How it started: webhook, schedule, api, mcp, agent or retry (null for older runs).
    source: str | None = None
    #: Who started it: {"agent_id", "session_id", "turn_id"} for an agent, {"retry_of"},
    #: {"delivery_id"} for a webhook, ...
    origin: dict[str, Any] | None = None
    #: The webhook delivery's id (its idempotency key: `webhook-id`, `X-GitHub-Delivery`, ...)
    #: for a run a webhook started; null otherwise.
    delivery_id: str | None = None
    #: The run this one retries from the start (source `retry`); null otherwise.
    retry_of: str | None = None
    created_at: IsoTime
    started_at: IsoTime | None = None
    finished_at: IsoTime | None = None
    #: From start to finish; an unfinished run's grows (now - started); null until it starts.
    duration_ms: float | None = None


class RunOut(RunSummary):
    """A run with every node of its definition version, in definition order."""

    nodes: list[NodeRunOut]


class RunPage(BaseModel):
    """A page of runs, newest first; pass `next_cursor` back as `cursor` for the next page.
    `has_more` says whether there is one (no count: it would cost a scan)."""

    runs: list[RunSummary]
    next_cursor: str | None = None
    has_more: bool = False


class RunEventStream(BaseModel):
    """The run's changes as Server-Sent Events (text/event-stream), until it ends.

    `run` (the run, at the start and on each status change), `node` (one node, when its
    status or attempt changes), then `end` (the whole run) and the stream closes. Each `data:`
    line is one JSON object: a RunOut for `run` and `end`, a NodeRunOut for `node`. Comment
    lines (`:`) are heartbeats."""

    #: The media type the OpenAPI document states for this answer (app/web/openapi.py).
    media_type: ClassVar[str] = "text/event-stream"

    event: Literal["run", "node", "end"]
    data: str


class WorkflowSummary(BaseModel):
    """A workflow at its current version, without the definition."""

    workflow_id: str
    version: int
    status: str
    name: str
    agent_id: str | None = None
    created_at: IsoTime
    updated_at: IsoTime


class WorkflowOut(WorkflowSummary):
    """A workflow and one version of its definition (the current one unless asked)."""

    definition: dict[str, Any]


class WorkflowList(BaseModel):
    """Every workflow, at its current version."""

    workflows: list[WorkflowSummary]


class VersionOut(BaseModel):
    """One stored version of a workflow."""

    version: int
    name: str
    created_at: IsoTime


class VersionList(BaseModel):
    """The stored versions of one workflow, newest first."""

    workflow_id: str
    versions: list[VersionOut]


class AgentOut(BaseModel):
    """An agent: its LLM config, personality and tools."""

    agent_id: str
    agent_name: str
    llm_config: dict[str, Any]
    personality_traits: dict[str, Any]
    #: Workflows and remote MCP servers the agent may call.
    tools: AgentTools = Field(default_factory=list)
    #: Served at /mcp as the tool `ask_<agent_id>`.
    expose_as_tool: bool = False
    created_at: IsoTime
    updated_at: IsoTime


class AgentList(BaseModel):
    """Every agent, oldest first."""

    agents: list[AgentOut] = Field(default_factory=list)


class ToolCallOut(BaseModel):
    """One tool call of a turn, as the reply reports it."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    ok: bool
    ms: int


class AgentReply(BaseModel):
    """An agent's answer; `memory_size` counts the session's stored messages, both roles."""

    agent_id: str
    session_id: str
    reply: str
    memory_size: int
    provider: str
    model: str
    usage: dict[str, int] = Field(default_factory=dict)
    #: The turn's tool calls, in order: [{"name", "arguments", "ok", "ms"}].
    tool_calls: list[ToolCallOut] = Field(default_factory=list)
    #: Set when a bound ended the turn early.
    stopped: Literal["max_tool_calls", "deadline"] | None = None


class AgentReplyPending(BaseModel):
    """The turn is queued or running on a worker: poll `status_url` for the reply."""

    task_id: str
    status: Literal["queued", "running"]
    status_url: str
    agent_id: str | None = None
    session_id: str | None = None


class MemoryToolCall(BaseModel):
    """A call an assistant message asked for."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class MemoryToolResult(BaseModel):
    """Which call a `tool` message answers, and how it went."""

    id: str
    name: str
    ok: bool
    ms: int


class MemoryMessage(BaseModel):
    """A stored message: the user's, the agent's (with the tool calls it asked for), or a tool
    call's result (role `tool`, its content clipped to DUALMCP_AGENT_TOOL_RESULT_MAX_CHARS)."""

    role: Literal["user", "assistant", "tool"]
    content: str
    created_at: IsoTime
    tool_calls: list[MemoryToolCall] | None = None
    tool_result: MemoryToolResult | None = None


class AgentMemory(BaseModel):
    """A session's stored messages, oldest first, and the rolling summary of those that fell
    out of the agent's memory window."""

    agent_id: str
    session_id: str
    messages: list[MemoryMessage]
    summary: str = ""


def respond(model: type[BaseModel], data: Any, status: int = 200) -> Response:
    """`data` shaped by `model` (so the answer matches the document), as JSON."""
    response = jsonify(model.model_validate(data).model_dump(mode="json"))
    response.status_code = status
    return response
