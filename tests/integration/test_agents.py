"""Agents through the front door: gunicorn, a real worker running dualmcp.agent_process and the
mcp_llm node, PostgreSQL, Redis, and a local server speaking the OpenAI wire format."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.http_peer import HttpPeer
from tests.integration.conftest import ADMIN_KEY, Stack, finished_run, launch
from tests.llm_peers import chat_requests, serve_openai

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def llm_peer() -> Iterator[HttpPeer]:
    with HttpPeer() as peer:
        serve_openai(peer)
        yield peer


@pytest.fixture
def client(web_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web_url, timeout=30, headers=ADMIN) as client:
        yield client


def create_agent(client: httpx.Client, peer: HttpPeer) -> str:
    agent_id = f"ada-{uuid.uuid4().hex[:8]}"
    body = {
        "agent_id": agent_id,
        "agent_name": "Ada",
        "llm_config": {"provider": "openai", "model": "gpt-test", "base_url": f"{peer.url}/v1"},
        "personality_traits": {"role": "a sales assistant", "tone": "warm"},
    }
    assert client.post("/api/agents", json=body).status_code == 201
    return agent_id


def contents(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] != "system"]


def test_a_message_is_answered_by_the_agents_llm_on_a_worker(
    stack: Stack, client: httpx.Client, llm_peer: HttpPeer
) -> None:
    agent_id = create_agent(client, llm_peer)

    answer = client.post(
        "/api/mcp/process", json={"agent_id": agent_id, "message": "Hi", "session_id": "s1"}
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["reply"] == "peer reply to: Hi"
    assert answer.json()["memory_size"] == 2
    [sent] = chat_requests(llm_peer)
    assert sent["model"] == "gpt-test"
    assert sent["messages"][0]["content"] == "You are Ada, a sales assistant.\nTone: warm."


def test_async_answers_202_and_the_status_url_gives_the_reply(
    stack: Stack, client: httpx.Client, llm_peer: HttpPeer
) -> None:
    agent_id = create_agent(client, llm_peer)

    accepted = client.post(
        "/api/mcp/process", json={"agent_id": agent_id, "message": "Hi", "async": True}
    )

    assert accepted.status_code == 202, accepted.text
    status_url = accepted.json()["status_url"]
    deadline = time.monotonic() + 30
    while (polled := client.get(status_url)).status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert polled.status_code == 200, polled.text
    assert polled.json()["reply"] == "peer reply to: Hi"
    assert polled.json()["session_id"] == accepted.json()["session_id"]


def test_a_workflow_with_mcp_llm_shares_the_agents_memory(
    stack: Stack, client: httpx.Client, llm_peer: HttpPeer
) -> None:
    agent_id = create_agent(client, llm_peer)
    said = {"agent_id": agent_id, "session_id": "lead-7", "message": "The lead is Grace Hopper."}
    assert client.post("/api/mcp/process", json=said).status_code == 200
    definition = {
        "workflow_id": f"wf-{agent_id}",
        "agent_id": agent_id,
        "nodes": [
            {
                "id": "analyze",
                "type": "mcp_llm",
                "params": {
                    "prompt": "Score the lead for {{ trigger.company }}",
                    "session_id": "{{ trigger.session }}",
                },
            }
        ],
    }

    run = finished_run(stack, launch(stack, definition, {"company": "Navy", "session": "lead-7"}))

    assert run["status"] == "succeeded", run
    output = run["by_node"]["analyze"]["output"]
    assert output["text"] == "peer reply to: Score the lead for Navy"
    assert (output["provider"], output["model"], output["memory_size"]) == ("openai", "gpt-test", 4)
    assert contents(chat_requests(llm_peer)[1]) == [
        "The lead is Grace Hopper.",
        "peer reply to: The lead is Grace Hopper.",
        "Score the lead for Navy",
    ]
    # ...and the conversation goes on over HTTP with the workflow's turn remembered.
    follow_up = {**said, "message": "What did you score?"}
    assert client.post("/api/mcp/process", json=follow_up).json()["memory_size"] == 6
    memory = client.get(f"/api/agents/{agent_id}/memory", params={"session_id": "lead-7"})
    assert [m["content"] for m in memory.json()["messages"]][::2] == [
        "The lead is Grace Hopper.",
        "Score the lead for Navy",
        "What did you score?",
    ]
