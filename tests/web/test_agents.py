"""Agents over HTTP: the seed's create path, the /api/agents resource, validation and scopes."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from app.agents.schemas import McpServerTool, WorkflowTool
from app.agents.service import AgentService
from tests.web.conftest import ADMIN, READ
from tests.web.factories import two_step, unique_id

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


# Tools (issue 12: an agent's `tools` list and `expose_as_tool`)

MCP_SERVER = {"type": "mcp", "url": "https://tools.example.com/mcp", "allow": ["search"]}


def tool_workflow(client: FlaskClient, *, tool: bool = True) -> str:
    """A stored workflow, with a top-level `tool` block unless told otherwise."""
    definition = two_step()
    if tool:
        definition["tool"] = {
            "name": definition["workflow_id"].replace("-", "_"),
            "description": "Score a lead",
            "input_schema": {"type": "object"},
        }
    answer = client.post("/api/workflows", json=definition, headers=ADMIN)
    assert answer.status_code == 201, answer.json
    return str(definition["workflow_id"])


def test_a_new_agent_has_no_tools_and_is_not_exposed(client: FlaskClient) -> None:
    agent = create(client, SALES)

    assert agent["tools"] == []
    assert agent["expose_as_tool"] is False


@pytest.mark.parametrize("path", ["/api/agent/create", "/api/agents"])
def test_tools_and_exposure_given_at_create_are_shown_back(client: FlaskClient, path: str) -> None:
    tools = [{"type": "workflow", "workflow_id": tool_workflow(client)}, MCP_SERVER]

    answer = client.post(path, json=SALES | {"tools": tools, "expose_as_tool": True}, headers=ADMIN)

    assert answer.status_code == 201, answer.json
    shown = client.get("/api/agents/sales-assistant", headers=READ).json
    assert shown is not None
    assert shown["tools"] == tools
    assert shown["expose_as_tool"] is True
    assert shown == answer.json


def test_patch_replaces_the_whole_tool_list(client: FlaskClient) -> None:
    first, second = tool_workflow(client), tool_workflow(client)
    create(client, SALES | {"tools": [{"type": "workflow", "workflow_id": first}, MCP_SERVER]})

    answer = client.patch(
        "/api/agents/sales-assistant",
        json={"tools": [{"type": "workflow", "workflow_id": second}]},
        headers=ADMIN,
    )

    assert answer.status_code == 200, answer.json
    shown = client.get("/api/agents/sales-assistant", headers=READ).json
    assert shown is not None
    assert shown["tools"] == [{"type": "workflow", "workflow_id": second}]


def test_patch_without_tools_leaves_them_alone(client: FlaskClient) -> None:
    create(client, SALES | {"tools": [MCP_SERVER], "expose_as_tool": True})

    answer = client.patch(
        "/api/agents/sales-assistant", json={"agent_name": "Renamed"}, headers=ADMIN
    )

    assert answer.status_code == 200
    assert answer.json is not None
    assert answer.json["tools"] == [MCP_SERVER]
    assert answer.json["expose_as_tool"] is True


def test_patch_with_an_empty_list_removes_every_tool(client: FlaskClient) -> None:
    create(client, SALES | {"tools": [MCP_SERVER]})

    answer = client.patch("/api/agents/sales-assistant", json={"tools": []}, headers=ADMIN)

    assert answer.status_code == 200
    assert answer.json is not None
    assert answer.json["tools"] == []


@pytest.mark.parametrize("field", ["tools", "expose_as_tool"])
def test_patch_with_null_tools_or_exposure_is_a_422(client: FlaskClient, field: str) -> None:
    create(client, SALES)

    answer = client.patch("/api/agents/sales-assistant", json={field: None}, headers=ADMIN)

    assert answer.status_code == 422
    assert paths_of(answer) == [field]


def test_the_next_turn_reads_the_patched_tools(
    client: FlaskClient, agent_service: AgentService
) -> None:
    create(client, SALES | {"tools": [MCP_SERVER]})
    assert agent_service.profiles.get("sales-assistant").tools != ()  # now cached
    workflow_id = tool_workflow(client)

    client.patch(
        "/api/agents/sales-assistant",
        json={"tools": [{"type": "workflow", "workflow_id": workflow_id}], "expose_as_tool": True},
        headers=ADMIN,
    )

    profile = agent_service.profiles.get("sales-assistant")
    assert profile.tools == (WorkflowTool(type="workflow", workflow_id=workflow_id),)
    assert profile.expose_as_tool is True


def test_a_workflow_tool_naming_an_unknown_workflow_is_a_422(client: FlaskClient) -> None:
    tools = [MCP_SERVER, {"type": "workflow", "workflow_id": "no-such-workflow"}]

    answer = client.post("/api/agents", json=SALES | {"tools": tools}, headers=ADMIN)

    assert answer.status_code == 422
    assert answer.json == {
        "error": {
            "code": "validation_failed",
            "message": "invalid fields: tools.1.workflow_id",
            "details": {
                "problems": [
                    {
                        "code": "unknown_workflow",
                        "path": "tools.1.workflow_id",
                        "message": "no workflow with id 'no-such-workflow'",
                    }
                ]
            },
        }
    }
    assert client.get("/api/agents/sales-assistant", headers=READ).status_code == 404


def test_a_workflow_tool_naming_a_workflow_without_a_tool_block_is_a_422(
    client: FlaskClient,
) -> None:
    plain, tool = tool_workflow(client, tool=False), tool_workflow(client)
    create(client, SALES | {"tools": [{"type": "workflow", "workflow_id": tool}]})
    tools = [{"type": "workflow", "workflow_id": tool}, {"type": "workflow", "workflow_id": plain}]

    answer = client.patch("/api/agents/sales-assistant", json={"tools": tools}, headers=ADMIN)

    assert answer.status_code == 422
    assert answer.json is not None
    (problem,) = answer.json["error"]["details"]["problems"]
    assert (problem["code"], problem["path"]) == ("not_a_tool", "tools.1.workflow_id")
    assert "tool" in problem["message"]
    shown = client.get("/api/agents/sales-assistant", headers=READ).json
    assert shown is not None
    assert shown["tools"] == [{"type": "workflow", "workflow_id": tool}]


def test_each_bad_entry_is_a_problem_at_its_index(client: FlaskClient) -> None:
    tools = [
        MCP_SERVER,
        {"type": "mcp", "url": "https://user:pw@tools.example.com/mcp"},
        {"type": "shell", "command": "ls"},
        {"type": "mcp", "url": "ftp://tools.example.com/mcp", "allow": ["ok", "not ok"]},
        dict(MCP_SERVER),
    ]

    answer = client.post("/api/agents", json=SALES | {"tools": tools}, headers=ADMIN)

    assert answer.status_code == 422
    assert paths_of(answer) == ["tools.1.url", "tools.2", "tools.3.allow.1", "tools.3.url"]


def test_a_repeated_entry_is_a_problem_at_the_repeat(client: FlaskClient) -> None:
    answer = client.post(
        "/api/agents", json=SALES | {"tools": [MCP_SERVER, MCP_SERVER]}, headers=ADMIN
    )

    assert answer.status_code == 422
    assert paths_of(answer) == ["tools.1.url"]


def test_an_agent_whose_id_makes_no_tool_name_cannot_be_exposed(client: FlaskClient) -> None:
    body = SALES | {"agent_id": unique_id("sales.team"), "expose_as_tool": True}

    answer = client.post("/api/agents", json=body, headers=ADMIN)

    assert answer.status_code == 422
    assert paths_of(answer) == ["expose_as_tool"]


def test_the_openapi_document_describes_tools_and_exposure(client: FlaskClient) -> None:
    document = client.get("/api/openapi.json").json
    assert document is not None
    schemas = document["components"]["schemas"]

    for model in ("AgentCreate", "AgentPatch", "AgentOut"):
        assert {"tools", "expose_as_tool"} <= set(schemas[model]["properties"]), model
    assert set(schemas) >= {WorkflowTool.__name__, McpServerTool.__name__}
    assert schemas["McpServerTool"]["properties"]["url"]["type"] == "string"
