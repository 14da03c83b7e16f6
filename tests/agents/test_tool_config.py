"""An agent's `tools` and `expose_as_tool`: the entry models, the checks against the database,
the cached profile a turn reads, and the agents /mcp serves. The store tests run on the real
PostgreSQL; the model tests need no service."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from app.agents import (
    AgentConfigInvalid,
    ExposedAgent,
    McpServerTool,
    PersonalityTraits,
    WorkflowTool,
    create_agent,
    list_exposed_agents,
    update_agent,
)
from app.agents.cache import LocalCache
from app.agents.profiles import KEY_PREFIX, AgentProfile, AgentProfiles
from app.agents.schemas import MAX_TOOLS, dump_tools, parse_tools
from app.workflows import save_workflow, set_workflow_status

MCP = {"type": "mcp", "url": "https://tools.example.com/mcp"}


def problems(tools: Any) -> list[tuple[str, str]]:
    """(path, code) of every problem with `tools`, the path as the API shows it."""
    with pytest.raises(ValidationError) as caught:
        parse_tools(tools)
    return [
        (".".join(str(part) for part in error["loc"]), error["type"])
        for error in caught.value.errors()
    ]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def workflow(tool: bool = True) -> dict[str, Any]:
    workflow_id = unique("score-lead")
    definition: dict[str, Any] = {
        "workflow_id": workflow_id,
        "nodes": [{"id": "score", "type": "transform", "params": {"values": {"score": 1}}}],
    }
    if tool:
        definition["tool"] = {
            "name": workflow_id.replace("-", "_"),
            "description": "Score a lead",
            "input_schema": {"type": "object"},
        }
    return definition


def saved(sessions: sessionmaker[Session], definition: dict[str, Any]) -> str:
    with sessions.begin() as session:
        save_workflow(session, definition)
    return str(definition["workflow_id"])


# The entries


def test_both_kinds_of_entry_are_read() -> None:
    tools = parse_tools(
        [
            {"type": "workflow", "workflow_id": "score-lead"},
            MCP | {"credential": "crm-token", "allow": ["search", "crm.find_lead"]},
        ]
    )

    assert tools == [
        WorkflowTool(type="workflow", workflow_id="score-lead"),
        McpServerTool(
            type="mcp",
            url=MCP["url"],
            credential="crm-token",
            allow=["search", "crm.find_lead"],
        ),
    ]


def test_an_entry_is_stored_as_written_without_nulls() -> None:
    written = [MCP, {"type": "workflow", "workflow_id": "score-lead"}]

    assert dump_tools(parse_tools(written)) == written


def test_an_unknown_type_is_a_problem_at_its_entry() -> None:
    assert problems([MCP, {"type": "shell", "command": "ls"}]) == [("1", "union_tag_invalid")]


def test_an_entry_without_a_type_is_a_problem_at_its_entry() -> None:
    assert problems([{"workflow_id": "score-lead"}]) == [("0", "union_tag_not_found")]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://tools.example.com/mcp",
        "file:///etc/passwd",
        "tools.example.com/mcp",
        "/mcp",
        "https://",
        "https://tools.example.com:99999/mcp",
        "https://tools.example.com/m cp",
    ],
)
def test_a_url_must_be_absolute_http_with_a_host(url: str) -> None:
    assert problems([{"type": "mcp", "url": url}]) == [("0.url", "value_error")]


@pytest.mark.parametrize(
    "url", ["https://user:secret@tools.example.com/mcp", "https://token@tools.example.com/mcp"]
)
def test_a_url_with_credentials_is_refused(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_tools([MCP, {"type": "mcp", "url": url}])

    (error,) = caught.value.errors()
    assert error["loc"] == (1, "url")
    assert "credential" in error["msg"]


def test_an_http_url_on_loopback_is_accepted_here() -> None:
    # Where it may connect is the SSRF guard's call, when the turn opens it.
    (tool,) = parse_tools([{"type": "mcp", "url": "http://127.0.0.1:8931/mcp"}])

    assert isinstance(tool, McpServerTool)


def test_the_same_workflow_twice_is_refused_at_the_repeat() -> None:
    entry = {"type": "workflow", "workflow_id": "score-lead"}

    assert problems([entry, MCP, entry]) == [("2.workflow_id", "duplicate_tool")]


def test_the_same_server_twice_is_refused_whatever_the_case_of_its_host() -> None:
    again = {"type": "mcp", "url": "HTTPS://Tools.Example.com/mcp", "allow": ["search"]}

    assert problems([MCP, again]) == [("1.url", "duplicate_tool")]


def test_two_paths_of_one_host_are_two_servers() -> None:
    other = {"type": "mcp", "url": "https://tools.example.com/other/mcp"}

    assert len(parse_tools([MCP, other])) == 2


def test_more_than_the_limit_is_refused() -> None:
    many = [{"type": "workflow", "workflow_id": f"w{index}"} for index in range(MAX_TOOLS + 1)]

    assert problems(many) == [("", "too_long")]
    assert len(parse_tools(many[:MAX_TOOLS])) == MAX_TOOLS


@pytest.mark.parametrize(
    ("allow", "path", "code"),
    [
        (["search", "has space"], "0.allow.1", "string_pattern_mismatch"),
        ([""], "0.allow.0", "string_pattern_mismatch"),
        (["x" * 129], "0.allow.0", "string_pattern_mismatch"),
        (["search", "search"], "0.allow", "value_error"),
        ([], "0.allow", "too_short"),
        ("search", "0.allow", "list_type"),
    ],
)
def test_bad_allow_names_are_refused(allow: Any, path: str, code: str) -> None:
    assert problems([MCP | {"allow": allow}]) == [(path, code)]


@pytest.mark.parametrize("name", ["has space", "-leading-dash", ""])
def test_a_credential_is_named_as_credentials_are(name: str) -> None:
    assert problems([MCP | {"credential": name}]) == [("0.credential", "string_pattern_mismatch")]


@pytest.mark.parametrize(
    "entry",
    [
        {"type": "workflow", "workflow_id": "score-lead", "url": "https://x.example/mcp"},
        MCP | {"headers": {"Authorization": "Bearer x"}},
    ],
)
def test_extra_fields_are_refused(entry: dict[str, Any]) -> None:
    assert [code for _, code in problems([entry])] == ["extra_forbidden"]


def test_every_bad_entry_is_reported_at_once() -> None:
    found = problems(
        [
            {"type": "workflow"},
            {"type": "mcp", "url": "ftp://x"},
            {"type": "mcp", "url": "https://x.example/mcp", "allow": ["ok", "not ok"]},
        ]
    )

    assert [path for path, _ in found] == ["0.workflow_id", "1.url", "2.allow.1"]


# The checks against the database


def test_a_workflow_tool_must_name_a_stored_workflow(pg_sessions: sessionmaker[Session]) -> None:
    tool = saved(pg_sessions, workflow())
    tools = parse_tools(
        [{"type": "workflow", "workflow_id": tool}, {"type": "workflow", "workflow_id": "nope"}]
    )

    with pytest.raises(AgentConfigInvalid) as caught, pg_sessions.begin() as session:
        create_agent(session, agent_id=unique("agent"), agent_name="Seller", tools=tools)

    assert [p.to_dict() for p in caught.value.problems] == [
        {
            "code": "unknown_workflow",
            "path": "tools.1.workflow_id",
            "message": "no workflow with id 'nope'",
        }
    ]


def test_a_workflow_tool_must_name_a_workflow_with_a_tool_block(
    pg_sessions: sessionmaker[Session],
) -> None:
    plain = saved(pg_sessions, workflow(tool=False))
    agent_id = unique("agent")
    with pg_sessions.begin() as session:
        create_agent(session, agent_id=agent_id, agent_name="Seller")

    with pytest.raises(AgentConfigInvalid) as caught, pg_sessions.begin() as session:
        update_agent(
            session, agent_id, tools=parse_tools([MCP, {"type": "workflow", "workflow_id": plain}])
        )

    assert [(p.code, p.path) for p in caught.value.problems] == [
        ("not_a_tool", "tools.1.workflow_id")
    ]


def test_a_paused_workflow_may_be_a_tool(pg_sessions: sessionmaker[Session]) -> None:
    tool = saved(pg_sessions, workflow())
    with pg_sessions.begin() as session:
        set_workflow_status(session, tool, "paused")
    agent_id = unique("agent")

    with pg_sessions.begin() as session:
        agent = create_agent(
            session,
            agent_id=agent_id,
            agent_name="Seller",
            tools=parse_tools([{"type": "workflow", "workflow_id": tool}]),
        )
        assert agent.tools == [{"type": "workflow", "workflow_id": tool}]


def test_an_agent_id_that_makes_no_tool_name_cannot_be_exposed(
    pg_sessions: sessionmaker[Session],
) -> None:
    agent_id = unique("sales.team")  # '.' is fine in an agent id, not in a tool name

    with pytest.raises(AgentConfigInvalid) as caught, pg_sessions.begin() as session:
        create_agent(session, agent_id=agent_id, agent_name="Seller", expose_as_tool=True)

    assert [(p.code, p.path) for p in caught.value.problems] == [
        ("invalid_tool_name", "expose_as_tool")
    ]


# What a turn and /mcp read


def test_the_profile_holds_the_tools_and_is_cached_with_them(
    pg_sessions: sessionmaker[Session],
) -> None:
    tool = saved(pg_sessions, workflow())
    agent_id = unique("agent")
    entries = [{"type": "workflow", "workflow_id": tool}, MCP | {"allow": ["search"]}]
    with pg_sessions.begin() as session:
        create_agent(
            session,
            agent_id=agent_id,
            agent_name="Seller",
            tools=parse_tools(entries),
            expose_as_tool=True,
        )
    cache = LocalCache()
    profiles = AgentProfiles(pg_sessions, cache, ttl_s=60)

    first = profiles.get(agent_id)
    with pg_sessions.begin() as session:  # changed behind the cache's back: the cache answers
        update_agent(session, agent_id, tools=[], expose_as_tool=False)
    second = profiles.get(agent_id)

    assert first.tools == tuple(parse_tools(entries))
    assert first.expose_as_tool is True
    assert second == first
    assert json.loads(cache.get(KEY_PREFIX + agent_id) or "{}")["tools"] == entries


def test_a_profile_cached_before_agents_had_tools_is_read_again(
    pg_sessions: sessionmaker[Session],
) -> None:
    agent_id = unique("agent")
    with pg_sessions.begin() as session:
        create_agent(session, agent_id=agent_id, agent_name="Seller", tools=parse_tools([MCP]))
    cache = LocalCache()
    old_entry = {
        "agent_id": agent_id,
        "agent_name": "Seller",
        "llm_config": {"provider": "echo"},
        "personality_traits": {},
    }
    cache.set(KEY_PREFIX + agent_id, json.dumps(old_entry), 60)

    profile = AgentProfiles(pg_sessions, cache, ttl_s=60).get(agent_id)

    assert profile.tools == tuple(parse_tools([MCP]))
    assert "tools" in json.loads(cache.get(KEY_PREFIX + agent_id) or "{}")


def test_an_old_cached_profile_still_parses() -> None:
    old_entry = {"agent_name": "Seller", "llm_config": {}, "personality_traits": {"tone": "dry"}}

    profile = AgentProfile.from_cached("seller", old_entry)

    assert (profile.tools, profile.expose_as_tool) == ((), False)
    assert profile.personality.tone == "dry"


def test_the_exposed_agents_are_listed_by_id_with_their_role(
    pg_sessions: sessionmaker[Session],
) -> None:
    prefix = unique("exposed")
    with pg_sessions.begin() as session:
        for suffix, exposed, traits in [
            ("b", True, PersonalityTraits(role="qualifies inbound leads")),
            ("a", True, PersonalityTraits.model_validate({"description": "answers FAQs"})),
            ("c", False, PersonalityTraits(role="hidden")),
            ("d", True, PersonalityTraits()),
        ]:
            create_agent(
                session,
                agent_id=f"{prefix}-{suffix}",
                agent_name=f"Agent {suffix}",
                personality_traits=traits,
                expose_as_tool=exposed,
            )
        update_agent(session, f"{prefix}-d", expose_as_tool=False)

    with pg_sessions() as session:
        listed = [agent for agent in list_exposed_agents(session) if agent[0].startswith(prefix)]

    assert listed == [
        ExposedAgent(f"{prefix}-a", "Agent a", "answers FAQs"),
        (f"{prefix}-b", "Agent b", "qualifies inbound leads"),
    ]
