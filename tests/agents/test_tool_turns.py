"""A turn with tools on the real PostgreSQL and Redis: the loop, its bounds, its memory, and a
turn resumed where it stopped.

The offline `echo` provider's `/call <tool> {json}` syntax drives the loop. Workflow runs the
turn starts execute in this process, node by node, through the same `execute_node` a worker
runs (`InProcessRuns`); the Celery worker path is tested in tests/integration.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.agents import create_agent
from app.agents.cache import RedisCache
from app.agents.memory import NewMessage
from app.agents.schemas import LLMConfig, WorkflowTool
from app.agents.service import AgentService
from app.config import Settings
from app.llm import LLMProviders
from app.models import WorkflowRun
from app.safe_http import make_http_client
from app.workflows import save_workflow, set_workflow_status
from app.workflows.agent_tools import WorkflowTools
from app.workflows.invoke import execute_node
from app.workflows.runs import NodeRef
from app.workflows.tool_runs import start_tool_run

SCORE_LEAD = {
    "workflow_id": "score-lead-tool",
    "name": "Score a lead",
    "tool": {
        "name": "score_lead",
        "description": "Score a sales lead from 0 to 100",
        "input_schema": {
            "type": "object",
            "properties": {"email": {"type": "string"}, "size": {"type": "integer"}},
            "required": ["email"],
        },
    },
    "nodes": [
        {
            "id": "score",
            "type": "transform",
            "params": {"values": {"email": "{{ trigger.email }}", "score": 87}},
        }
    ],
}


class InProcessRuns:
    """`publish` for the agent service: runs each published node here, as a worker would."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings
        self.http = make_http_client(settings)
        self.published: list[NodeRef] = []
        self.hold = False

    def __call__(self, refs: list[NodeRef]) -> None:
        self.published += refs
        if self.hold:  # a stuck broker: the run stays queued
            return
        queue = list(refs)
        while queue:
            queue += execute_node(self.sessions, self.settings, self.http, queue.pop(0))


@pytest.fixture
def agent_with_tool(pg_sessions: sessionmaker[Session]) -> Iterator[str]:
    agent_id = f"tooled-{uuid.uuid4().hex[:8]}"
    with pg_sessions.begin() as session:
        save_workflow(session, SCORE_LEAD)
        set_workflow_status(session, "score-lead-tool", "active")  # another test paused it
        create_agent(
            session,
            agent_id=agent_id,
            agent_name="Sales",
            llm_config=LLMConfig(provider="echo"),
            tools=[WorkflowTool(type="workflow", workflow_id="score-lead-tool")],
        )
    yield agent_id


Tooled = Callable[..., tuple[AgentService, InProcessRuns]]


@pytest.fixture
def tooled(pg_sessions: sessionmaker[Session], cache_redis: redis.Redis) -> Iterator[Tooled]:
    """An AgentService whose agents may call workflows, run here by `InProcessRuns`."""
    made: list[AgentService] = []

    def build(**overrides: Any) -> tuple[AgentService, InProcessRuns]:
        fields: dict[str, Any] = {"DUALMCP_HTTP_ALLOWLIST": "127.0.0.1"}
        settings = Settings(**{**fields, **overrides})
        runs = InProcessRuns(pg_sessions, settings)
        llm = LLMProviders(settings, runs.http)
        tools = WorkflowTools(pg_sessions, runs)
        service = AgentService(
            settings, pg_sessions, RedisCache(cache_redis), llm, workflow_tools=tools
        )
        made.append(service)
        return service, runs

    yield build
    for service in made:
        service.close()


def _runs_of_turn(sessions: sessionmaker[Session], turn_id: str) -> list[WorkflowRun]:
    with sessions() as session:
        rows = session.scalars(select(WorkflowRun).where(WorkflowRun.source == "agent")).all()
        return [row for row in rows if (row.origin or {}).get("turn_id") == turn_id]


def test_a_workflow_tool_runs_and_its_result_reaches_the_reply_and_memory(
    tooled: Tooled, agent_with_tool: str, pg_sessions: sessionmaker[Session]
) -> None:
    service, _runs = tooled()
    message = '/call score_lead {"email": "ada@example.com"}'

    reply = service.converse(agent_with_tool, "s1", message, turn_id="turn-a")

    assert [call["name"] for call in reply.tool_calls] == ["score_lead"]
    assert reply.tool_calls[0]["ok"] is True
    assert reply.tool_calls[0]["arguments"] == {"email": "ada@example.com"}
    assert '"score": 87' in reply.completion.text
    history = service.memory.history(agent_with_tool, "s1", 10)
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
    assert history[1]["tool_calls"][0]["name"] == "score_lead"
    result = json.loads(history[2]["content"])
    assert result["status"] == "succeeded"
    assert result["output"]["score"]["score"] == 87
    (run,) = _runs_of_turn(pg_sessions, "turn-a")
    assert run.origin == {"agent_id": agent_with_tool, "session_id": "s1", "turn_id": "turn-a"}
    assert reply.memory_size == 4


def test_bad_arguments_go_back_to_the_model_and_start_no_run(
    tooled: Tooled, agent_with_tool: str, pg_sessions: sessionmaker[Session]
) -> None:
    service, runs = tooled()

    reply = service.converse(
        agent_with_tool, "s1", '/call score_lead {"size": "big"}', turn_id="turn-bad"
    )

    assert reply.tool_calls[0]["ok"] is False
    assert "arguments.email" in reply.completion.text
    assert "arguments.size" in reply.completion.text
    assert runs.published == []
    assert _runs_of_turn(pg_sessions, "turn-bad") == []


def test_more_calls_than_allowed_stop_the_turn_before_any_runs(
    tooled: Tooled, agent_with_tool: str
) -> None:
    service, runs = tooled(DUALMCP_AGENT_MAX_TOOL_CALLS=1)
    message = '/call score_lead {"email": "a@x.io"}\n/call score_lead {"email": "b@x.io"}'

    reply = service.converse(agent_with_tool, "s1", message)

    assert reply.stopped == "max_tool_calls"
    assert "limit of 1 tool calls" in reply.completion.text
    assert reply.tool_calls == []
    assert runs.published == []
    roles = [m["role"] for m in service.memory.history(agent_with_tool, "s1", 10)]
    assert roles == ["user", "assistant"]


def test_a_run_that_does_not_finish_in_time_ends_the_turn_at_its_deadline(
    tooled: Tooled, agent_with_tool: str
) -> None:
    service, runs = tooled(DUALMCP_AGENT_TURN_DEADLINE_S=1, DUALMCP_AGENT_TOOL_TIMEOUT_S=30)
    runs.hold = True

    reply = service.converse(agent_with_tool, "s1", '/call score_lead {"email": "a@x.io"}')

    assert reply.stopped == "deadline"
    assert reply.tool_calls[0]["ok"] is False
    assert 900 <= reply.tool_calls[0]["ms"] < 5000
    history = service.memory.history(agent_with_tool, "s1", 10)
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
    assert "still queued" in history[2]["content"]


def test_a_resumed_turn_repeats_no_recorded_call_and_starts_no_second_run(
    tooled: Tooled, agent_with_tool: str, pg_sessions: sessionmaker[Session]
) -> None:
    service, runs = tooled()
    message = '/call score_lead {"email": "ada@example.com"}'
    call = {"id": "echo-call-1-1", "name": "score_lead", "arguments": {"email": "ada@example.com"}}
    # The first worker recorded the call and started its run, then died before the result.
    service.memory.record(
        agent_with_tool,
        "s1",
        "turn-r",
        [NewMessage("user", message), NewMessage("assistant", "", tool_calls=[call])],
    )
    with pg_sessions.begin() as session:
        first = start_tool_run(
            session,
            "score-lead-tool",
            call["arguments"],
            source="agent",
            idempotency_key="turn-r:0",  # what the toolbox uses for the turn's first call
            origin={"agent_id": agent_with_tool, "session_id": "s1", "turn_id": "turn-r"},
        )
    runs(first.to_publish)

    reply = service.converse(agent_with_tool, "s1", message, turn_id="turn-r")

    assert reply.tool_calls[0]["ok"] is True
    assert [run.run_id for run in _runs_of_turn(pg_sessions, "turn-r")] == [uuid.UUID(first.run_id)]
    history = service.memory.history(agent_with_tool, "s1", 10)
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
    assert json.loads(history[2]["content"])["run_id"] == first.run_id
    assert {ref.run_id for ref in runs.published} == {first.run_id}


def test_a_finished_turn_delivered_again_answers_without_calling_anything(
    tooled: Tooled, agent_with_tool: str
) -> None:
    service, runs = tooled()
    message = '/call score_lead {"email": "ada@example.com"}'
    first = service.converse(agent_with_tool, "s1", message, turn_id="turn-twice")
    published = len(runs.published)

    again = service.converse(agent_with_tool, "s1", message, turn_id="turn-twice")

    assert again.completion.text == first.completion.text
    assert again.tool_calls == first.tool_calls
    assert len(runs.published) == published
    assert len(service.memory.history(agent_with_tool, "s1", 20)) == 4


def test_memory_after_a_flushed_redis_still_holds_the_tool_turn(
    tooled: Tooled, agent_with_tool: str, cache_redis: redis.Redis
) -> None:
    service, _runs = tooled()
    service.converse(agent_with_tool, "s1", '/call score_lead {"email": "ada@example.com"}')
    cached = service.memory.load(agent_with_tool, "s1")
    cache_redis.flushdb()

    rebuilt = service.memory.load(agent_with_tool, "s1")

    assert rebuilt == cached
    roles = [m.role for m in rebuilt.messages()]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert rebuilt.messages()[1].tool_calls[0].name == "score_lead"
    assert rebuilt.messages()[2].tool_call_id == rebuilt.messages()[1].tool_calls[0].id


def test_a_paused_workflow_is_not_offered_and_the_model_hears_so(
    tooled: Tooled, agent_with_tool: str, pg_sessions: sessionmaker[Session]
) -> None:
    service, runs = tooled()
    with pg_sessions.begin() as session:
        set_workflow_status(session, "score-lead-tool", "paused")

    reply = service.converse(agent_with_tool, "s1", '/call score_lead {"email": "a@x.io"}')

    assert reply.tool_calls == []  # echo: the tool was not offered, so no call was made
    assert "unknown tool" in reply.completion.text or "score_lead" in reply.completion.text
    assert runs.published == []


def test_text_postgresql_cannot_store_is_a_bad_argument_or_replaced_never_a_crash(
    tooled: Tooled, agent_with_tool: str, pg_sessions: sessionmaker[Session]
) -> None:
    service, runs = tooled()
    # The model's arguments hold a NUL: a bad argument, no run. The echo reply repeats it.
    message = '/call score_lead {"email": "a\\u0000b"}'

    reply = service.converse(agent_with_tool, "s1", message, turn_id="turn-nul")

    assert reply.tool_calls[0]["ok"] is False
    assert "nul_character" in reply.completion.text
    assert runs.published == []
    history = service.memory.history(agent_with_tool, "s1", 10)
    assert history[1]["tool_calls"][0]["arguments"] == {"email": "a\ufffdb"}
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]


def test_a_known_call_gets_its_first_run_back_after_the_workflow_was_paused(
    agent_with_tool: str, pg_sessions: sessionmaker[Session]
) -> None:
    def start() -> str:
        with pg_sessions.begin() as session:
            started = start_tool_run(
                session,
                "score-lead-tool",
                {"email": "ada@example.com"},
                source="agent",
                idempotency_key="turn-paused:0",
            )
        return started.run_id

    first = start()
    with pg_sessions.begin() as session:
        set_workflow_status(session, "score-lead-tool", "paused")

    assert start() == first  # known delivery first, then the workflow's state
