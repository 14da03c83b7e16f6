"""Agents over HTTP: the seed's create path, the /api/agents resource, validation and scopes."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.web.conftest import ADMIN, READ
from tests.web.factories import two_step

SALES = {
    "agent_id": "sales-assistant",
    "agent_name": "Sales assistant",
    "llm_config": {"provider": "openai", "model": "gpt-4o", "temperature": 0.2, "max_tokens": 300},
    "personality_traits": {"tone": "friendly", "role": "sales assistant", "emoji": False},
}


def create(client: FlaskClient, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/api/agents", json=body, headers=ADMIN)
    assert answer.status_code == 201, answer.json
    return dict(answer.json or {})


def paths_of(answer: Any) -> list[str]:
    return sorted(p["path"] for p in answer.json["error"]["details"]["problems"])


@pytest.mark.parametrize("path", ["/api/agent/create", "/api/agents"])
def test_create_answers_201_with_the_agent(client: FlaskClient, path: str) -> None:
    answer = client.post(path, json=SALES, headers=ADMIN)

    assert answer.status_code == 201
    assert answer.headers["Location"] == "/api/agents/sales-assistant"
    agent = answer.json
    assert agent is not None
    assert agent["agent_id"] == "sales-assistant"
    assert agent["llm_config"] == SALES["llm_config"]
    assert agent["personality_traits"] == SALES["personality_traits"]
    assert agent["created_at"].endswith("Z")


def test_an_agent_id_is_made_from_the_name_when_left_out(client: FlaskClient) -> None:
    agent = create(client, {"agent_name": "Support Bot #1"})

    assert agent["agent_id"].startswith("support-bot-1-")


def test_the_llm_config_defaults_to_the_offline_echo_provider(client: FlaskClient) -> None:
    agent = create(client, {"agent_name": "Plain"})

    assert agent["llm_config"]["provider"] == "echo"
    assert agent["llm_config"]["model"] == "echo"


def test_the_model_defaults_per_provider(client: FlaskClient) -> None:
    agent = create(client, {"agent_name": "Claude", "llm_config": {"provider": "anthropic"}})

    assert agent["llm_config"]["model"].startswith("claude")


def test_a_duplicate_agent_id_is_a_409(client: FlaskClient) -> None:
    create(client, SALES)

    answer = client.post("/api/agent/create", json=SALES, headers=ADMIN)

    assert answer.status_code == 409
    assert answer.json is not None
    assert answer.json["error"]["code"] == "conflict"


def test_an_invalid_agent_is_a_422_naming_every_field(client: FlaskClient) -> None:
    body = {
        "agent_id": "has spaces",
        "llm_config": {
            "provider": "cohere",
            "temperature": 3,
            "max_tokens": 0,
            "base_url": "ftp://example.com",
            "top_k": 5,
        },
        "personality_traits": {"tone": 5, "nested": {"no": "dicts"}},
    }

    answer = client.post("/api/agents", json=body, headers=ADMIN)

    assert answer.status_code == 422
    assert paths_of(answer) == [
        "agent_id",
        "agent_name",
        "llm_config.base_url",
        "llm_config.max_tokens",
        "llm_config.provider",
        "llm_config.temperature",
        "llm_config.top_k",
        "personality_traits.nested",
        "personality_traits.tone",
    ]


def test_the_list_holds_every_agent(client: FlaskClient) -> None:
    create(client, SALES)
    create(client, {"agent_id": "second", "agent_name": "Second"})

    answer = client.get("/api/agents", headers=READ)

    assert answer.status_code == 200
    assert answer.json is not None
    assert [agent["agent_id"] for agent in answer.json["agents"]] == ["sales-assistant", "second"]


def test_an_agent_is_read_by_id(client: FlaskClient) -> None:
    created = create(client, SALES)

    answer = client.get("/api/agents/sales-assistant", headers=READ)

    assert answer.status_code == 200
    assert answer.json == created


def test_patch_replaces_only_the_fields_given(client: FlaskClient) -> None:
    create(client, SALES)

    answer = client.patch(
        "/api/agents/sales-assistant",
        json={"llm_config": {"provider": "echo", "temperature": 0}},
        headers=ADMIN,
    )

    assert answer.status_code == 200
    agent = answer.json
    assert agent is not None
    assert agent["llm_config"]["temperature"] == 0
    assert agent["llm_config"]["model"] == "echo"
    assert agent["agent_name"] == SALES["agent_name"]
    assert agent["personality_traits"] == SALES["personality_traits"]
    assert agent["updated_at"] >= agent["created_at"]


def test_patch_with_null_is_a_422(client: FlaskClient) -> None:
    create(client, SALES)

    answer = client.patch("/api/agents/sales-assistant", json={"agent_name": None}, headers=ADMIN)

    assert answer.status_code == 422
    assert paths_of(answer) == ["agent_name"]


def test_delete_answers_204_and_the_agent_is_gone(client: FlaskClient) -> None:
    create(client, SALES)

    answer = client.delete("/api/agents/sales-assistant", headers=ADMIN)

    assert answer.status_code == 204
    assert answer.data == b""
    assert client.get("/api/agents/sales-assistant", headers=READ).status_code == 404


def test_a_deleted_agents_workflows_remain_without_an_agent(client: FlaskClient) -> None:
    create(client, SALES)
    definition = two_step() | {"agent_id": "sales-assistant"}
    client.post("/api/workflows", json=definition, headers=ADMIN)

    client.delete("/api/agents/sales-assistant", headers=ADMIN)

    listed = client.get("/api/workflows", headers=READ).json
    assert listed is not None
    assert [w["workflow_id"] for w in listed["workflows"]] == [definition["workflow_id"]]


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_an_unknown_agent_is_a_404(client: FlaskClient, method: str) -> None:
    headers = READ if method == "get" else ADMIN
    kwargs: dict[str, Any] = {"json": {"agent_name": "x"}} if method == "patch" else {}

    answer = getattr(client, method)("/api/agents/nobody", headers=headers, **kwargs)

    assert answer.status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/agent/create"),
        ("post", "/api/agents"),
        ("patch", "/api/agents/sales-assistant"),
        ("delete", "/api/agents/sales-assistant"),
    ],
)
def test_a_read_key_cannot_change_agents(client: FlaskClient, method: str, path: str) -> None:
    before = create(client, SALES)
    kwargs: dict[str, Any] = {} if method == "delete" else {"json": {"agent_name": "x"}}

    answer = getattr(client, method)(path, headers=READ, **kwargs)

    assert answer.status_code == 403
    assert client.get("/api/agents/sales-assistant", headers=READ).json == before
