"""Agents that act, on the real stack (DESIGN.md: Agents that act): gunicorn, PostgreSQL, Redis
and the smallest safe worker layout, one worker with `-Q dualmcp.agents` and one with
`-Q dualmcp.nodes,dualmcp.runs,dualmcp.slow`, one process each.

The models are local servers speaking OpenAI's and Anthropic's tool calling (tests/llm_peers.py)
or the offline `echo` provider; the remote MCP server is built with the SDK (tests/mcp_peers.py).
The layout has a broker database of its own, so its queues are not the session worker's, and a
cache database of its own, which a test flushes.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis
from cryptography.fernet import Fernet
from sqlalchemy import text

from app.models import make_engine, make_session_factory
from tests.http_peer import HttpPeer
from tests.integration.conftest import ADMIN_KEY, STACK_ENV, Stack, gunicorn
from tests.llm_peers import (
    RESULTS_PREFIX,
    chat_requests,
    message_requests,
    serve_anthropic_tools,
    serve_openai_tools,
)
from tests.mcp_peers import McpPeer, PeerCall

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
#: Redis databases of this layout: its broker and reply backend, and its memory cache.
BROKER_DB, CACHE_DB = 5, 6
AGENTS_QUEUES, NODES_QUEUES = "dualmcp.agents", "dualmcp.nodes,dualmcp.runs,dualmcp.slow"


def _redis_db(url: str, db: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


@dataclass
class Split:
    """The split layout: its stack, the agents worker of the moment, the front end's URL and
    the memory cache."""

    stack: Stack
    agents: subprocess.Popen[bytes]
    url: str
    cache: redis.Redis


@pytest.fixture(scope="module")
def split(
    migrated_postgres: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Split]:
    env = {
        **os.environ,
        **STACK_ENV,
        "DATABASE_URL": migrated_postgres,
        "REDIS_URL": _redis_db(redis_url, BROKER_DB),
        "DUALMCP_CACHE_URL": _redis_db(redis_url, CACHE_DB),
        # Credentials are read by the front end (PUT) and by the worker (a remote MCP key).
        "DUALMCP_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }
    broker = redis.Redis.from_url(env["REDIS_URL"])
    cache = redis.Redis.from_url(env["DUALMCP_CACHE_URL"])
    broker.flushdb()
    cache.flushdb()
    engine = make_engine(migrated_postgres)
    stack = Stack(env, make_session_factory(engine), tmp_path_factory.mktemp("split-stack"))
    try:
        agents = stack.start_queue_worker(AGENTS_QUEUES, "agents-1")
        stack.start_queue_worker(NODES_QUEUES, "nodes-1")
        with gunicorn(stack) as url:
            yield Split(stack, agents, url, cache)
    finally:
        stack.stop()
        engine.dispose()
        broker.close()
        cache.close()


@pytest.fixture
def client(split: Split) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=split.url, timeout=40, headers=ADMIN) as client:
        yield client


def create_tool_workflow(client: httpx.Client, nodes: list[dict[str, Any]]) -> str:
    """A workflow with a `tool` block, its name unique in the session; the tool's name (the
    workflow's id is `workflow_of(name)`)."""
    suffix = uuid.uuid4().hex[:8]
    name = f"score_lead_{suffix}"
    definition = {
        "workflow_id": f"score-lead-{suffix}",
        "name": "Score a lead",
        "tool": {
            "name": name,
            "description": "Score a sales lead from 0 to 100",
            "input_schema": {
                "type": "object",
                "properties": {"email": {"type": "string"}},
                "required": ["email"],
            },
        },
        "nodes": nodes,
    }
    created = client.post("/api/workflows", json=definition)
    assert created.status_code == 201, created.text
    return name


SCORE_NODES = [
    {
        "id": "score",
        "type": "transform",
        "params": {"values": {"email": "{{ trigger.email }}", "score": 87}},
    }
]


def workflow_of(tool: str) -> str:
    return tool.replace("score_lead_", "score-lead-")


def create_agent(
    client: httpx.Client, llm_config: dict[str, Any], workflow_tool: str, mcp: McpPeer | None
) -> str:
    """An agent with the workflow tool and, given an MCP peer, the peer's `add` (its token
    stored as the agent's credential `peer-key`)."""
    agent_id = f"tooled-{uuid.uuid4().hex[:8]}"
    tools: list[dict[str, Any]] = [{"type": "workflow", "workflow_id": workflow_of(workflow_tool)}]
    if mcp is not None:
        tools.append({"type": "mcp", "url": mcp.url, "credential": "peer-key", "allow": ["add"]})
    body = {"agent_id": agent_id, "agent_name": "Sales", "llm_config": llm_config, "tools": tools}
    created = client.post("/api/agents", json=body)
    assert created.status_code == 201, created.text
    if mcp is not None:
        stored = client.put(
            f"/api/agents/{agent_id}/credentials/peer-key", json={"value": mcp.token}
        )
        assert stored.status_code == 201, stored.text
    return agent_id


def memory(client: httpx.Client, agent_id: str, session_id: str) -> list[dict[str, Any]]:
    answer = client.get(f"/api/agents/{agent_id}/memory", params={"session_id": session_id})
    assert answer.status_code == 200, answer.text
    messages: list[dict[str, Any]] = answer.json()["messages"]
    return messages


def agent_runs(split: Split, agent_id: str) -> list[str]:
    """The ids of the runs the agent's turns started (source `agent`), oldest first."""
    with split.stack.sessions() as session:
        rows = session.execute(
            text(
                "SELECT run_id FROM workflow_runs WHERE source = 'agent'"
                " AND origin->>'agent_id' = :agent ORDER BY created_at"
            ),
            {"agent": agent_id},
        )
        return [str(row.run_id) for row in rows]


def two_calls(tool: str) -> str:
    score = f'/call {tool} {{"email": "ada@example.com"}}'
    return f'Score her and add.\n{score}\n/call add {{"a": 2, "b": 3}}'


def assert_both_calls_answered(answer: httpx.Response, tool: str) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert [(c["name"], c["arguments"], c["ok"]) for c in body["tool_calls"]] == [
        (tool, {"email": "ada@example.com"}, True),
        ("add", {"a": 2, "b": 3}, True),
    ]
    assert body.get("stopped") is None
    assert body["reply"].startswith(RESULTS_PREFIX)
    workflow_result, add_result = body["reply"][len(RESULTS_PREFIX) :].split("; ", 1)
    assert workflow_result.startswith(f"{tool}")
    assert '"status": "succeeded"' in workflow_result and '"score": 87' in workflow_result
    assert add_result.startswith("add") and '"sum": 5' in add_result
    return body


def test_an_openai_agent_calls_a_workflow_and_a_remote_mcp_tool_and_remembers_them(
    split: Split, client: httpx.Client
) -> None:
    with HttpPeer() as llm, McpPeer() as mcp:
        serve_openai_tools(llm)
        tool = create_tool_workflow(client, SCORE_NODES)
        config = {"provider": "openai", "model": "m", "base_url": f"{llm.url}/v1"}
        agent_id = create_agent(client, config, tool, mcp)

        answer = client.post(
            "/api/mcp/process",
            json={"agent_id": agent_id, "message": two_calls(tool), "session_id": "s1"},
        )

        assert_both_calls_answered(answer, tool)
        (run_id,) = agent_runs(split, agent_id)
        run = client.get(f"/api/runs/{run_id}").json()
        assert run["source"] == "agent"
        assert run["status"] == "succeeded"
        assert run["origin"]["agent_id"] == agent_id and run["origin"]["session_id"] == "s1"
        assert mcp.calls == [PeerCall("add", {"a": 2, "b": 3})]
        assert mcp.requests
        assert {r.authorization for r in mcp.requests} == {f"Bearer {mcp.token}"}

        first, second = chat_requests(llm)
        offered = {t["function"]["name"] for t in first["tools"] if t["type"] == "function"}
        assert offered == {tool, "add"}
        asked, *results = second["messages"][-3:]
        assert asked["role"] == "assistant"
        assert [c["function"]["name"] for c in asked["tool_calls"]] == [tool, "add"]
        assert json.loads(asked["tool_calls"][1]["function"]["arguments"]) == {"a": 2, "b": 3}
        assert [m["role"] for m in results] == ["tool", "tool"]
        assert [m["tool_call_id"] for m in results] == [c["id"] for c in asked["tool_calls"]]
        assert '"score": 87' in results[0]["content"] and '"sum": 5' in results[1]["content"]

        stored = memory(client, agent_id, "s1")
        assert [m["role"] for m in stored] == ["user", "assistant", "tool", "tool", "assistant"]
        assert [c["name"] for c in stored[1]["tool_calls"]] == [tool, "add"]
        assert [m["tool_result"]["name"] for m in stored[2:4]] == [tool, "add"]

        split.cache.flushdb()

        assert memory(client, agent_id, "s1") == stored
        again = client.post(
            "/api/mcp/process",
            json={"agent_id": agent_id, "message": "Thanks!", "session_id": "s1"},
        )
        assert again.status_code == 200, again.text
        assert again.json()["tool_calls"] == []
        history = [m for m in chat_requests(llm)[-1]["messages"] if m["role"] != "system"]
        assert [m["role"] for m in history] == [
            "user",
            "assistant",
            "tool",
            "tool",
            "assistant",
            "user",
        ]
        assert [c["function"]["name"] for c in history[1]["tool_calls"]] == [tool, "add"]
        assert [m["tool_call_id"] for m in history[2:4]] == [
            c["id"] for c in history[1]["tool_calls"]
        ]
        assert history[-1]["content"] == "Thanks!"


def test_an_anthropic_agent_gets_both_tool_results_in_one_user_message(
    split: Split, client: httpx.Client
) -> None:
    with HttpPeer() as llm, McpPeer() as mcp:
        serve_anthropic_tools(llm)
        tool = create_tool_workflow(client, SCORE_NODES)
        config = {"provider": "anthropic", "model": "m", "base_url": llm.url}
        agent_id = create_agent(client, config, tool, mcp)

        answer = client.post(
            "/api/mcp/process",
            json={"agent_id": agent_id, "message": two_calls(tool), "session_id": "s1"},
        )

        assert_both_calls_answered(answer, tool)
        assert len(agent_runs(split, agent_id)) == 1
        assert mcp.calls == [PeerCall("add", {"a": 2, "b": 3})]
        first, second = message_requests(llm)
        assert {t["name"] for t in first["tools"]} == {tool, "add"}
        asked, answered = second["messages"][-2:]
        uses = [b for b in asked["content"] if b["type"] == "tool_use"]
        assert [u["name"] for u in uses] == [tool, "add"]
        assert answered["role"] == "user"
        assert [b["type"] for b in answered["content"]] == ["tool_result", "tool_result"]
        assert [b["tool_use_id"] for b in answered["content"]] == [u["id"] for u in uses]
        roles = [m["role"] for m in memory(client, agent_id, "s1")]
        assert roles == ["user", "assistant", "tool", "tool", "assistant"]


def test_more_tool_calls_than_the_bound_stop_the_turn_before_any_run(
    split: Split, client: httpx.Client
) -> None:
    with HttpPeer() as llm:
        serve_openai_tools(llm)
        tool = create_tool_workflow(client, SCORE_NODES)
        config = {"provider": "openai", "model": "m", "base_url": f"{llm.url}/v1"}
        agent_id = create_agent(client, config, tool, None)
        message = "\n".join(f'/call {tool} {{"email": "{n}@example.com"}}' for n in range(9))

        answer = client.post(
            "/api/mcp/process", json={"agent_id": agent_id, "message": message, "session_id": "s1"}
        )

        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["stopped"] == "max_tool_calls"
        assert body["tool_calls"] == []
        assert "limit of 8 tool calls" in body["reply"]
        assert len(chat_requests(llm)) == 1
        assert agent_runs(split, agent_id) == []
        assert [m["role"] for m in memory(client, agent_id, "s1")] == ["user", "assistant"]


def turn_roles(split: Split, turn_id: str) -> list[str]:
    """The roles of the messages a turn stored, oldest first."""
    with split.stack.sessions() as session:
        rows = session.execute(
            text("SELECT role FROM agent_messages WHERE turn_id = :turn ORDER BY id"),
            {"turn": turn_id},
        )
        return [row.role for row in rows]


def turn_runs(split: Split, turn_id: str) -> int:
    with split.stack.sessions() as session:
        return int(
            session.execute(
                text(
                    "SELECT count(*) FROM workflow_runs WHERE source = 'agent'"
                    " AND origin->>'turn_id' = :turn"
                ),
                {"turn": turn_id},
            ).scalar_one()
        )


def test_a_turn_whose_worker_dies_mid_tool_call_finishes_on_another_with_one_run(
    split: Split, client: httpx.Client, http_peer: HttpPeer
) -> None:
    """Also the layout's proof against deadlock: the one agents process waits on a run that
    the one nodes process runs."""
    slow = f"/agent-tools/slow-{uuid.uuid4().hex[:6]}"
    http_peer.reply(slow, json={"lead": "hot"}, delay_s=3)
    tool = create_tool_workflow(
        client,
        [
            {
                "id": "fetch",
                "type": "http_request",
                "params": {"url": f"{http_peer.url}{slow}"},
                "timeout_s": 8,
            }
        ],
    )
    agent_id = create_agent(client, {"provider": "echo"}, tool, None)

    accepted = client.post(
        "/api/mcp/process",
        json={
            "agent_id": agent_id,
            "message": f'/call {tool} {{"email": "ada@example.com"}}',
            "session_id": "s1",
            "async": True,
        },
    )
    assert accepted.status_code == 202, accepted.text
    task_id = accepted.json()["task_id"]

    def call_in_flight() -> bool:
        # The call is recorded, its run started, and its slow node is mid-request.
        return turn_runs(split, task_id) == 1 and bool(http_peer.requests_to(slow))

    split.stack.wait_for(call_in_flight, 20, what="the tool's slow node to be mid-request")
    split.stack.kill_queue_worker(split.agents)
    assert turn_roles(split, task_id) == ["user", "assistant"]  # killed mid-call
    split.agents = split.stack.start_queue_worker(AGENTS_QUEUES, "agents-2")

    def reply() -> dict[str, Any] | None:
        polled = client.get(f"/api/mcp/process/{task_id}")
        assert polled.status_code in (200, 202), polled.text
        return polled.json() if polled.status_code == 200 else None

    body = split.stack.wait_for(reply, 30, what="the resumed turn's reply")

    assert [(c["name"], c["ok"]) for c in body["tool_calls"]] == [(tool, True)]
    assert '"lead": "hot"' in body["reply"]
    assert turn_runs(split, task_id) == 1
    assert len(http_peer.requests_to(slow)) == 1
    stored = memory(client, agent_id, "s1")
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert [c["name"] for c in stored[1]["tool_calls"]] == [tool]
    assert json.loads(stored[2]["content"])["status"] == "succeeded"
    logs = {
        name: (split.stack.logs / f"{name}.log").read_text() for name in ("agents-2", "nodes-1")
    }
    assert f"[{task_id}] succeeded" in logs["agents-2"]  # the new worker finished the turn
    run_id = json.loads(stored[2]["content"])["run_id"]
    assert f"run_id={run_id} node_id=fetch" in logs["nodes-1"]  # the run had its own worker
