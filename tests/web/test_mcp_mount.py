"""POST /mcp on SQLite, served by waitress as `dualmcp standalone` serves it, driven by the
official SDK client in both protocol generations (and by plain HTTP for what comes before the
SDK: auth, Origin, methods). A run's nodes execute in the test's thread when published."""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import mcp_types as types
import pytest
from flask import Flask
from mcp import Client
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from waitress import create_server

from app.agents.service import AgentService
from app.agents.store import create_agent
from app.config import Settings
from app.models import AgentMCP, WorkflowRun
from app.web import create_app
from app.web.context import WebContext
from app.web.mcp_mount import EXTENSION, McpRuntime
from app.workflows import NodeRef
from app.workflows.store import set_workflow_status
from tests.mcp_clients import call_tool, mcp_session, result_texts, tool_names
from tests.web.conftest import ADMIN_KEY, READ_KEY, ThreadAgentTasks
from tests.web.factories import drive, save, unique_id

INVOKE_KEY = "invoke-key-for-tests"
ALLOWED_ORIGIN = "https://app.example.com"
MODES = ["auto", "legacy"]
T = TypeVar("T")


class DrivingPublisher:
    """Runs each published run to its end at once, like an idle worker; or, with `hold`, leaves
    it queued (a busy one)."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self.sessions, self.settings = sessions, settings
        self.published: list[NodeRef] = []
        self.hold = False

    def __call__(self, refs: list[NodeRef]) -> None:
        self.published.extend(refs)
        if not self.hold:
            drive(self.sessions, self.settings, refs)


class QueueDepth:
    def __init__(self) -> None:
        self.depth: int | None = None

    def __call__(self) -> int | None:
        return self.depth


@pytest.fixture
def mcp_settings(tmp_path: Path) -> Settings:
    return Settings(
        DATABASE_URL=f"sqlite:///{tmp_path / 'mcp.db'}",
        DUALMCP_API_KEYS=f"admin:{ADMIN_KEY},read:{READ_KEY},invoke:{INVOKE_KEY}",
        CELERY_BROKER_URL="memory://",
        DUALMCP_MCP_WAIT_S=2,
        DUALMCP_MCP_ALLOWED_ORIGINS=f" {ALLOWED_ORIGIN}/ ,http://localhost:3000",
        DUALMCP_MAX_QUEUE_DEPTH=100,
    )


@pytest.fixture
def driving(web_sessions: sessionmaker[Session], mcp_settings: Settings) -> DrivingPublisher:
    return DrivingPublisher(web_sessions, mcp_settings)


@pytest.fixture
def queue_depth() -> QueueDepth:
    return QueueDepth()


@pytest.fixture
def mcp_app(
    mcp_settings: Settings,
    web_sessions: sessionmaker[Session],
    driving: DrivingPublisher,
    queue_depth: QueueDepth,
    agent_service: AgentService,
    agent_tasks: ThreadAgentTasks,
) -> Iterator[Flask]:
    context = WebContext(
        settings=mcp_settings,
        sessions=web_sessions,
        publish=driving,
        queue_depth=queue_depth,
        agent_tasks=agent_tasks,
        agent_service=agent_service,
    )
    app = create_app({"TESTING": True}, context=context)
    yield app
    app.extensions[EXTENSION].close()


@pytest.fixture
def url(mcp_app: Flask) -> Iterator[str]:
    """The app behind waitress on a free loopback port; yields the /mcp URL."""
    server = create_server(mcp_app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}/mcp"
    server.trigger.pull_trigger(server.close)  # closed in its own loop: no select() on a dead fd
    thread.join(timeout=10)
    server.task_dispatcher.shutdown()


def tool_workflow(tool_name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A workflow served as `tool_name`: greets `arguments.name`."""
    return {
        "workflow_id": unique_id("greet"),
        "tool": {
            "name": tool_name,
            "description": "Greets someone by name.",
            "input_schema": schema
            or {
                "type": "object",
                "properties": {"name": {"type": "string"}, "times": {"type": "integer"}},
                "required": ["name"],
            },
        },
        "nodes": [
            {
                "id": "greet",
                "type": "transform",
                "params": {"values": {"greeting": "hello {{ trigger.name }}"}},
            }
        ],
    }


def mcp(
    url: str,
    key: str,
    mode: str,
    use: Callable[[Client], Awaitable[T]],
    headers: dict[str, str] | None = None,
) -> T:
    return mcp_session(url, key, use, mode=mode, headers=headers, timeout_s=30)


def list_names(url: str, key: str, mode: str = "auto") -> list[str]:
    return tool_names(url, key, mode)


def call(
    url: str, name: str, arguments: dict[str, Any], key: str = INVOKE_KEY, mode: str = "auto"
) -> types.CallToolResult:
    return call_tool(url, key, name, arguments, mode)


def texts(result: types.CallToolResult) -> list[str]:
    return result_texts(result)


def runs(sessions: sessionmaker[Session]) -> list[WorkflowRun]:
    with sessions() as session:
        return list(session.scalars(select(WorkflowRun)))


def post(url: str, headers: dict[str, str]) -> httpx.Response:
    """A raw legacy `initialize`, for what the endpoint answers before the SDK."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream"}
    return httpx.post(url, json=body, headers={**accept, **headers}, timeout=10)


@pytest.mark.parametrize("mode", MODES)
def test_the_list_holds_active_tool_workflows_exposed_agents_and_get_run(
    url: str, web_sessions: sessionmaker[Session], mode: str
) -> None:
    save(web_sessions, tool_workflow("greet"))
    paused = save(web_sessions, tool_workflow("greet_paused"))
    save(web_sessions, {**tool_workflow("unused"), "tool": None})
    with web_sessions.begin() as session:
        set_workflow_status(session, paused, "paused")
        create_agent(session, agent_id="helper", agent_name="Helper", expose_as_tool=True)
        create_agent(session, agent_id="private", agent_name="Private")

    assert list_names(url, READ_KEY, mode) == ["get_run", "ask_helper", "greet"]


def test_a_listed_workflow_shows_its_description_and_input_schema(
    url: str, web_sessions: sessionmaker[Session]
) -> None:
    schema = {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}}
    save(web_sessions, tool_workflow("score", schema))

    async def tools(client: Client) -> list[types.Tool]:
        return (await client.list_tools()).tools

    listed = {tool.name: tool for tool in mcp(url, READ_KEY, "auto", tools)}

    assert listed["score"].description == "Greets someone by name."
    assert listed["score"].input_schema == schema
    assert listed["get_run"].input_schema["required"] == ["run_id"]


@pytest.mark.parametrize("mode", MODES)
def test_a_call_runs_the_workflow_once_and_answers_with_its_output(
    url: str, web_sessions: sessionmaker[Session], driving: DrivingPublisher, mode: str
) -> None:
    workflow_id = save(web_sessions, tool_workflow("greet"))

    result = call(url, "greet", {"name": "Ada"}, mode=mode)

    [run] = runs(web_sessions)
    assert result.is_error is False
    assert result.structured_content == {
        "run_id": str(run.run_id),
        "status": "succeeded",
        "output": {"greet": {"greeting": "hello Ada"}},
    }
    assert json.loads(texts(result)[0]) == result.structured_content
    assert (run.workflow_id, run.source) == (workflow_id, "mcp")
    assert len(driving.published) == 1


def test_a_run_still_going_at_the_deadline_answers_its_id_and_get_run_finishes_the_story(
    url: str,
    web_sessions: sessionmaker[Session],
    driving: DrivingPublisher,
    mcp_settings: Settings,
) -> None:
    save(web_sessions, tool_workflow("greet"))
    driving.hold = True

    began = time.monotonic()
    started = call(url, "greet", {"name": "Grace"})
    waited = time.monotonic() - began
    run_id = started.structured_content["run_id"] if started.structured_content else None
    before = call(url, "get_run", {"run_id": run_id})
    drive(web_sessions, mcp_settings, driving.published)
    after = call(url, "get_run", {"run_id": run_id})

    assert started.is_error is False
    assert mcp_settings.mcp_wait_s <= waited < mcp_settings.mcp_wait_s + 1.5
    assert started.structured_content == {"run_id": run_id, "status": "queued"}
    assert f'call get_run with {{"run_id": "{run_id}"}}' in texts(started)[1]
    assert before.structured_content == {"run_id": run_id, "status": "queued"}
    assert after.structured_content == {
        "run_id": run_id,
        "status": "succeeded",
        "output": {"greet": {"greeting": "hello Grace"}},
    }
    assert len(runs(web_sessions)) == 1


@pytest.mark.parametrize("mode", MODES)
def test_bad_arguments_name_each_field_and_start_no_run(
    url: str, web_sessions: sessionmaker[Session], driving: DrivingPublisher, mode: str
) -> None:
    save(web_sessions, tool_workflow("greet"))

    result = call(url, "greet", {"times": "twice"}, mode=mode)

    assert result.is_error is True
    assert "arguments.name" in texts(result)[0] and "arguments.times" in texts(result)[0]
    assert result.structured_content is not None
    problems = result.structured_content["problems"]
    assert {problem["path"] for problem in problems} == {"arguments.name", "arguments.times"}
    assert runs(web_sessions) == [] and driving.published == []


def test_text_the_database_cannot_store_is_a_bad_argument(
    url: str, web_sessions: sessionmaker[Session], driving: DrivingPublisher
) -> None:
    save(web_sessions, tool_workflow("greet"))

    result = call(url, "greet", {"name": "a\u0000b"})

    assert result.is_error is True
    assert result.structured_content is not None
    problems = result.structured_content["problems"]
    assert [(p["code"], p["path"]) for p in problems] == [("nul_character", "arguments.name")]
    assert runs(web_sessions) == [] and driving.published == []


def test_a_paused_workflow_is_no_longer_callable(
    url: str, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = save(web_sessions, tool_workflow("greet"))
    with web_sessions.begin() as session:
        set_workflow_status(session, workflow_id, "paused")

    result = call(url, "greet", {"name": "Ada"})

    assert result.is_error is True
    assert "no tool named 'greet'" in texts(result)[0]
    assert runs(web_sessions) == []


def test_a_read_key_may_list_but_not_call_even_claiming_another_scope(
    url: str, web_sessions: sessionmaker[Session]
) -> None:
    save(web_sessions, tool_workflow("greet"))

    async def called(client: Client) -> types.CallToolResult:
        return await client.call_tool("greet", {"name": "Ada"})

    result = mcp(url, READ_KEY, "auto", called, headers={"X-Dualmcp-Scope": "admin"})

    assert "greet" in list_names(url, READ_KEY)
    assert result.is_error is True
    assert texts(result) == ["this key has the read scope; calling tools needs invoke"]
    assert runs(web_sessions) == []


def test_an_admin_key_may_call(url: str, web_sessions: sessionmaker[Session]) -> None:
    save(web_sessions, tool_workflow("greet"))

    result = call(url, "greet", {"name": "Ada"}, key=ADMIN_KEY)

    assert result.is_error is False
    assert result.structured_content is not None
    assert result.structured_content["status"] == "succeeded"


def test_a_full_queue_refuses_the_call_and_starts_no_run(
    url: str, web_sessions: sessionmaker[Session], queue_depth: QueueDepth
) -> None:
    save(web_sessions, tool_workflow("greet"))
    queue_depth.depth = 101

    result = call(url, "greet", {"name": "Ada"})

    assert result.is_error is True
    assert texts(result) == ["busy: too much work is queued; retry later"]
    assert runs(web_sessions) == []


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"run_id": "00000000-0000-4000-8000-000000000000"}, "no run with id"),
        ({"run_id": "not-a-run"}, "no run with id"),
        ({}, "arguments.run_id: is required"),
    ],
)
def test_get_run_of_no_run_is_a_tool_error(
    url: str, arguments: dict[str, Any], expected: str
) -> None:
    result = call(url, "get_run", arguments)

    assert result.is_error is True
    assert expected in texts(result)[0]


@pytest.mark.parametrize("mode", MODES)
def test_an_exposed_agent_answers_and_its_session_continues(
    url: str, web_sessions: sessionmaker[Session], mode: str
) -> None:
    with web_sessions.begin() as session:
        create_agent(session, agent_id="helper", agent_name="Helper", expose_as_tool=True)

    first = call(url, "ask_helper", {"message": "hello"}, mode=mode)
    assert first.structured_content is not None, texts(first)
    session_id = first.structured_content["session_id"]
    second = call(url, "ask_helper", {"message": "again", "session_id": session_id}, mode=mode)

    assert first.is_error is False and second.is_error is False
    assert set(first.structured_content) == {"reply", "session_id"}
    assert "hello" in first.structured_content["reply"]  # the offline echo provider
    assert second.structured_content == {
        "reply": second.structured_content["reply"],
        "session_id": session_id,
    }
    assert json.loads(texts(second)[0]) == second.structured_content


def test_an_agent_not_exposed_is_not_callable(
    url: str, web_sessions: sessionmaker[Session], agent_tasks: ThreadAgentTasks
) -> None:
    with web_sessions.begin() as session:
        create_agent(session, agent_id="private", agent_name="Private")

    result = call(url, "ask_private", {"message": "hello"})

    assert result.is_error is True
    assert texts(result) == ["no tool named 'ask_private'"]
    assert agent_tasks.submitted == []


def test_an_agent_still_answering_at_the_deadline_says_so(
    url: str, web_sessions: sessionmaker[Session], agent_tasks: ThreadAgentTasks
) -> None:
    with web_sessions.begin() as session:
        create_agent(session, agent_id="helper", agent_name="Helper", expose_as_tool=True)
    agent_tasks.hold.set()

    result = call(url, "ask_helper", {"message": "hello", "session_id": "s-1"})

    assert result.is_error is False
    assert result.structured_content is not None
    assert result.structured_content["session_id"] == "s-1"
    assert result.structured_content["status"] == "queued"
    assert "still answering" in texts(result)[1]


def test_an_agent_whose_tool_name_breaks_mcp_rules_is_left_out(
    url: str, web_sessions: sessionmaker[Session]
) -> None:
    long_id = "a" * 128  # ask_<id> would be 132 characters; MCP allows 128
    with web_sessions.begin() as session:
        create_agent(session, agent_id=long_id, agent_name="Long")
        create_agent(session, agent_id="helper", agent_name="Helper", expose_as_tool=True)
        # Stored before names were checked at save time.
        session.execute(update(AgentMCP).values(expose_as_tool=True))

    assert list_names(url, READ_KEY) == ["get_run", "ask_helper"]


def test_no_key_or_an_unknown_key_is_a_401_before_any_mcp_processing(url: str) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"Authorization": "Basic x"}):
        answer = post(url, headers)

        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == "Bearer"
        assert answer.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_get_and_delete_are_405_allowing_post(url: str, method: str) -> None:
    answer = httpx.request(method, url, headers={"Authorization": f"Bearer {ADMIN_KEY}"})

    assert answer.status_code == 405
    assert answer.headers["Allow"] == "POST"
    assert answer.json()["error"]["code"] == "method_not_allowed"


def test_a_foreign_origin_is_refused_and_an_allowed_one_served(url: str) -> None:
    key = {"Authorization": f"Bearer {ADMIN_KEY}"}

    foreign = post(url, {**key, "Origin": "https://evil.example"})
    allowed = post(url, {**key, "Origin": "https://APP.example.com"})
    keyless_foreign = post(url, {"Origin": "http://127.0.0.1:9"})

    assert foreign.status_code == 403
    assert foreign.json()["error"]["code"] == "forbidden_origin"
    assert keyless_foreign.status_code == 403
    assert allowed.status_code == 200
    assert allowed.json()["result"]["serverInfo"]["name"] == "dualmcp"


def test_an_app_starts_its_loop_on_the_first_mcp_request_and_stops_it_on_close(
    mcp_app: Flask, url: str
) -> None:
    runtime: McpRuntime = mcp_app.extensions[EXTENSION]
    before = loop_threads()
    list_names(url, READ_KEY)
    list_names(url, READ_KEY)
    during = loop_threads()
    runtime.close()

    assert (before, during, loop_threads()) == (before, before + 1, before)


def test_an_app_that_served_mcp_stops_its_loop_once_dropped(
    mcp_settings: Settings, web_sessions: sessionmaker[Session]
) -> None:
    before = loop_threads()

    def serve_one_request() -> None:
        context = WebContext(settings=mcp_settings, sessions=web_sessions, publish=lambda _: None)
        app = create_app({"TESTING": True}, context=context)
        answer = app.test_client().post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={
                "Authorization": f"Bearer {READ_KEY}",
                "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": "2025-06-18",
            },
        )
        assert answer.status_code == 200, answer.text
        assert loop_threads() == before + 1

    for _ in range(3):  # a test process builds many apps
        serve_one_request()
        gc.collect()

        assert loop_threads() == before


def loop_threads() -> int:
    return sum(thread.name == "dualmcp-mcp" for thread in threading.enumerate())
