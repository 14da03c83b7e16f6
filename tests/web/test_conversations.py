"""POST /api/mcp/process and an agent's memory over HTTP: shapes, waiting, 202s, auth.

Turns run in a thread standing in for the worker (ThreadAgentTasks) with the echo provider:
these tests are about the HTTP contract; tests/agents covers the LLM side.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from app.agents.replies import TaskOutcome
from app.config import Settings
from tests.web.conftest import ADMIN, READ, ThreadAgentTasks


@pytest.fixture
def agent(client: FlaskClient) -> str:
    body = {
        "agent_id": "helper",
        "agent_name": "Helper",
        "llm_config": {"provider": "echo"},
        "personality_traits": {"tone": "friendly"},
    }
    assert client.post("/api/agents", json=body, headers=ADMIN).status_code == 201
    return "helper"


def send(client: FlaskClient, **body: Any) -> Any:
    return client.post("/api/mcp/process", json=body, headers=ADMIN)


def test_a_message_is_answered_with_the_reply_and_the_memory_size(
    client: FlaskClient, agent: str
) -> None:
    first = send(client, agent_id=agent, message="Hi", session_id="s1")
    second = send(client, agent_id=agent, message="Again", session_id="s1")

    assert first.status_code == 200, first.json
    assert first.json == {
        "agent_id": "helper",
        "session_id": "s1",
        "reply": "[echo provider, no LLM called] Hi",
        "memory_size": 2,
        "provider": "echo",
        "model": "echo",
        "usage": {"input_tokens": 6, "output_tokens": 6},  # echo counts words
        "tool_calls": [],
        "stopped": None,
    }
    assert second.json["memory_size"] == 4


def test_without_a_session_id_a_new_conversation_starts(client: FlaskClient, agent: str) -> None:
    first = send(client, agent_id=agent, message="Hi").json
    second = send(client, agent_id=agent, message="Hi").json

    assert first["session_id"].startswith("session-")
    assert first["session_id"] != second["session_id"]
    assert second["memory_size"] == 2


def test_async_answers_202_with_a_status_url_that_gives_the_reply(
    client: FlaskClient, agent: str, agent_tasks: ThreadAgentTasks
) -> None:
    agent_tasks.hold.set()
    accepted = client.post(
        "/api/mcp/process",
        json={"agent_id": agent, "message": "Hi", "session_id": "s1", "async": True},
        headers=ADMIN,
    )

    assert accepted.status_code == 202
    body = accepted.json
    assert body["status"] == "queued"
    assert body["status_url"] == f"/api/mcp/process/{body['task_id']}"
    assert accepted.headers["Location"] == body["status_url"]
    assert client.get(body["status_url"], headers=READ).status_code == 202

    agent_tasks.release()
    done = client.get(body["status_url"], headers=READ)

    assert done.status_code == 200
    assert done.json["reply"] == "[echo provider, no LLM called] Hi"


def test_a_reply_slower_than_the_wait_answers_202(
    client: FlaskClient, agent: str, agent_tasks: ThreadAgentTasks, web_settings: Settings
) -> None:
    web_settings.agent_reply_wait_s = 0.05
    agent_tasks.hold.set()

    answer = send(client, agent_id=agent, message="Hi", session_id="s1")

    assert answer.status_code == 202
    assert answer.json["session_id"] == "s1"


def test_an_unknown_agent_is_a_404_and_nothing_is_queued(
    client: FlaskClient, agent_tasks: ThreadAgentTasks
) -> None:
    answer = send(client, agent_id="ghost", message="Hi")

    assert answer.status_code == 404
    assert agent_tasks.submitted == []


def test_an_unknown_status_url_is_a_404(client: FlaskClient) -> None:
    assert client.get("/api/mcp/process/no-such-task", headers=READ).status_code == 404


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        ({"agent_id": "helper"}, ["message"]),
        ({"agent_id": "helper", "message": ""}, ["message"]),
        ({"agent_id": "helper", "message": "x", "session_id": "has space"}, ["session_id"]),
        ({"agent_id": "helper", "message": "x", "extra": 1}, ["extra"]),
    ],
)
def test_an_invalid_message_is_a_422_naming_the_fields(
    client: FlaskClient, agent: str, body: dict[str, Any], paths: list[str]
) -> None:
    answer = client.post("/api/mcp/process", json=body, headers=ADMIN)

    assert answer.status_code == 422
    assert sorted(p["path"] for p in answer.json["error"]["details"]["problems"]) == paths


def test_sending_a_message_needs_the_admin_scope(client: FlaskClient, agent: str) -> None:
    body = {"agent_id": agent, "message": "Hi"}

    assert client.post("/api/mcp/process", json=body).status_code == 401
    assert client.post("/api/mcp/process", json=body, headers=READ).status_code == 403


def test_an_llm_that_refuses_is_a_502_and_nothing_is_stored(
    client: FlaskClient, agent: str
) -> None:
    # An openai agent with no key and no server: the worker reports it; nothing is stored.
    client.patch(f"/api/agents/{agent}", json={"llm_config": {"provider": "openai"}}, headers=ADMIN)

    answer = send(client, agent_id=agent, message="Hi", session_id="s1")

    assert answer.status_code == 502
    assert answer.json["error"]["code"] == "llm_failed"
    assert "OPENAI_API_KEY is not set" in answer.json["error"]["message"]
    memory = client.get(f"/api/agents/{agent}/memory?session_id=s1", headers=READ)
    assert memory.json["messages"] == []


def test_an_llm_unavailable_after_retries_is_a_503_with_retry_after(
    client: FlaskClient, agent: str, agent_tasks: ThreadAgentTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    error = {
        "status": 503,
        "code": "llm_unavailable",
        "message": "openai: HTTP 429 after 3 retries",
    }
    monkeypatch.setattr(agent_tasks, "outcome", lambda *_: TaskOutcome("done", {"error": error}))

    answer = send(client, agent_id=agent, message="Hi")

    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"
    assert answer.json["error"] == {
        "code": "llm_unavailable",
        "message": error["message"],
        "details": None,
    }


def test_the_memory_lists_the_sessions_messages_oldest_first(
    client: FlaskClient, agent: str
) -> None:
    send(client, agent_id=agent, message="one", session_id="s1")
    send(client, agent_id=agent, message="two", session_id="s1")
    send(client, agent_id=agent, message="elsewhere", session_id="s2")

    answer = client.get(
        f"/api/agents/{agent}/memory", query_string={"session_id": "s1"}, headers=READ
    )

    assert answer.status_code == 200
    body = answer.json
    assert (body["agent_id"], body["session_id"], body["summary"]) == ("helper", "s1", "")
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("user", "one"),
        ("assistant", "[echo provider, no LLM called] one"),
        ("user", "two"),
        ("assistant", "[echo provider, no LLM called] two"),
    ]
    assert body["messages"][0]["created_at"].endswith("Z")


def test_deleting_a_sessions_memory_forgets_only_that_session(
    client: FlaskClient, agent: str
) -> None:
    send(client, agent_id=agent, message="one", session_id="s1")
    send(client, agent_id=agent, message="two", session_id="s2")

    deleted = client.delete(f"/api/agents/{agent}/memory?session_id=s1", headers=ADMIN)

    assert deleted.status_code == 204
    memory = lambda s: client.get(f"/api/agents/{agent}/memory?session_id={s}", headers=READ)  # noqa: E731
    assert memory("s1").json["messages"] == []
    assert len(memory("s2").json["messages"]) == 2
    assert send(client, agent_id=agent, message="three", session_id="s1").json["memory_size"] == 2


def test_deleting_without_a_session_forgets_every_session(client: FlaskClient, agent: str) -> None:
    send(client, agent_id=agent, message="one", session_id="s1")
    send(client, agent_id=agent, message="two", session_id="s2")

    assert client.delete(f"/api/agents/{agent}/memory", headers=ADMIN).status_code == 204

    for session_id in ("s1", "s2"):
        memory = client.get(f"/api/agents/{agent}/memory?session_id={session_id}", headers=READ)
        assert memory.json["messages"] == []


def test_memory_endpoints_check_agent_and_scope(client: FlaskClient, agent: str) -> None:
    assert client.get("/api/agents/ghost/memory?session_id=s1", headers=READ).status_code == 404
    assert client.get(f"/api/agents/{agent}/memory", headers=READ).status_code == 422
    assert client.delete(f"/api/agents/{agent}/memory", headers=READ).status_code == 403


def test_a_recreated_agent_does_not_inherit_the_old_ones_memory(
    client: FlaskClient, agent: str
) -> None:
    send(client, agent_id=agent, message="secret", session_id="s1")
    assert client.delete(f"/api/agents/{agent}", headers=ADMIN).status_code == 204
    body = {"agent_id": agent, "agent_name": "New", "llm_config": {"provider": "echo"}}
    assert client.post("/api/agents", json=body, headers=ADMIN).status_code == 201

    reply = send(client, agent_id=agent, message="hello", session_id="s1").json

    assert reply["memory_size"] == 2


def test_a_patched_personality_is_used_by_the_next_message(
    client: FlaskClient, agent: str, agent_tasks: ThreadAgentTasks
) -> None:
    send(client, agent_id=agent, message="Hi", session_id="s1")  # caches the profile
    client.patch(
        f"/api/agents/{agent}", json={"personality_traits": {"tone": "formal"}}, headers=ADMIN
    )

    profile = agent_tasks.agents.profiles.get(agent)

    assert profile.personality.tone == "formal"
