"""The LLM nodes: mcp_llm talks to an agent with its memory; openai, ai_content_generation and
claude_ai generate once, with the workflow's agent's settings under their params."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.agents import LLMConfig, PersonalityTraits, create_agent
from app.drivers import get_driver
from app.errors import PermanentDriverError
from tests.drivers.conftest import MakeContext
from tests.http_peer import HttpPeer
from tests.llm_peers import chat_requests, message_requests, serve_anthropic, serve_openai


@pytest.fixture
def llm_peer() -> Any:
    with HttpPeer() as peer:
        serve_openai(peer)
        serve_anthropic(peer)
        yield peer


def openai_agent(sessions: sessionmaker[Session], peer: HttpPeer, **config: Any) -> str:
    agent_id = f"agent-{uuid.uuid4().hex[:8]}"
    with sessions.begin() as session:
        create_agent(
            session,
            agent_id=agent_id,
            agent_name="Scorer",
            llm_config=LLMConfig.model_validate(
                {"provider": "openai", "base_url": f"{peer.url}/v1", **config}
            ),
            personality_traits=PersonalityTraits(role="a lead scorer"),
        )
    return agent_id


def run(node_type: str, params: dict[str, Any], make_ctx: MakeContext, **ctx: Any) -> Any:
    driver = get_driver(node_type)
    return driver.run(driver.Params.model_validate(params), make_ctx(**ctx))


def test_mcp_llm_talks_to_the_workflows_agent_with_its_memory(
    llm_peer: HttpPeer, make_ctx: MakeContext, agent_sessions: sessionmaker[Session]
) -> None:
    agent_id = openai_agent(agent_sessions, llm_peer, model="scorer-1")
    params = {"prompt": "Score lead 42", "session_id": "lead-42"}

    run("mcp_llm", params, make_ctx, agent_id=agent_id, run_id="run-a")
    output = run("mcp_llm", {**params, "prompt": "And now?"}, make_ctx, agent_id=agent_id)

    second = chat_requests(llm_peer)[1]
    assert second["messages"][0]["content"] == "You are Scorer, a lead scorer."
    assert [m["content"] for m in second["messages"][1:]] == [
        "Score lead 42",
        "peer reply to: Score lead 42",
        "And now?",
    ]
    assert output == {
        "text": "peer reply to: And now?",
        "model": "scorer-1",
        "provider": "openai",
        "usage": {"input_tokens": 11, "output_tokens": 7},
        "agent_id": agent_id,
        "session_id": "lead-42",
        "memory_size": 4,
        "tool_calls": [],
    }


def test_mcp_llm_keeps_one_conversation_per_run_by_default(
    llm_peer: HttpPeer, make_ctx: MakeContext, agent_sessions: sessionmaker[Session]
) -> None:
    agent_id = openai_agent(agent_sessions, llm_peer)

    output = run("mcp_llm", {"prompt": "hi", "agent_id": agent_id}, make_ctx, run_id="r-1")

    assert output["session_id"] == "run-r-1"


def test_mcp_llm_without_an_agent_fails_the_node_saying_why(make_ctx: MakeContext) -> None:
    with pytest.raises(PermanentDriverError, match="mcp_llm needs an agent"):
        run("mcp_llm", {"prompt": "hi"}, make_ctx, agent_id=None)


def test_mcp_llm_with_an_unknown_agent_fails_permanently(make_ctx: MakeContext) -> None:
    with pytest.raises(PermanentDriverError, match="no agent with id 'ghost'"):
        run("mcp_llm", {"prompt": "hi", "agent_id": "ghost"}, make_ctx)


def test_the_openai_node_takes_model_and_personality_from_the_workflows_agent(
    llm_peer: HttpPeer, make_ctx: MakeContext, agent_sessions: sessionmaker[Session]
) -> None:
    agent_id = openai_agent(agent_sessions, llm_peer, model="agent-model", temperature=0.1)

    output = run("openai", {"prompt": "Write a subject line"}, make_ctx, agent_id=agent_id)

    [sent] = chat_requests(llm_peer)
    assert sent["model"] == "agent-model"
    assert sent["temperature"] == 0.1
    assert sent["messages"] == [
        {"role": "system", "content": "You are Scorer, a lead scorer."},
        {"role": "user", "content": "Write a subject line"},
    ]
    assert output["provider"] == "openai"


def test_node_params_override_the_agents_settings(
    llm_peer: HttpPeer, make_ctx: MakeContext, agent_sessions: sessionmaker[Session]
) -> None:
    agent_id = openai_agent(agent_sessions, llm_peer, model="agent-model")
    params = {"prompt": "Hi", "model": "node-model", "system": "Be brief.", "max_tokens": 9}

    run("openai", params, make_ctx, agent_id=agent_id)

    [sent] = chat_requests(llm_peer)
    assert (sent["model"], sent["max_tokens"]) == ("node-model", 9)
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}


def test_claude_ai_uses_the_messages_api(llm_peer: HttpPeer, make_ctx: MakeContext) -> None:
    params = {"prompt": "Summarise", "system": "Be brief.", "base_url": llm_peer.url}

    output = run("claude_ai", params, make_ctx)

    [sent] = message_requests(llm_peer)
    assert sent["system"] == "Be brief."
    assert sent["messages"] == [{"role": "user", "content": "Summarise"}]
    assert output["provider"] == "anthropic"
    assert output["text"] == "peer reply to: Summarise"


def test_ai_content_generation_takes_the_provider_from_params(
    llm_peer: HttpPeer, make_ctx: MakeContext, agent_sessions: sessionmaker[Session]
) -> None:
    agent_id = openai_agent(agent_sessions, llm_peer, model="agent-model")
    params = {"prompt": "Draft", "provider": "anthropic", "base_url": llm_peer.url}

    output = run("ai_content_generation", params, make_ctx, agent_id=agent_id)

    [sent] = message_requests(llm_peer)
    assert sent["model"].startswith("claude")  # the agent's openai model is not carried over
    assert output["provider"] == "anthropic"
    assert chat_requests(llm_peer) == []


@pytest.mark.parametrize("node_type", ["openai", "claude_ai", "ai_content_generation"])
def test_without_credentials_one_shot_nodes_answer_offline_and_say_so(
    make_ctx: MakeContext, node_type: str
) -> None:
    output = run(node_type, {"prompt": "Draft an email"}, make_ctx)

    assert output["provider"] == "echo"
    assert output["text"] == "[echo provider, no LLM called] Draft an email"


def test_a_deleted_workflow_agent_leaves_one_shot_nodes_running(make_ctx: MakeContext) -> None:
    output = run("openai", {"prompt": "Hi"}, make_ctx, agent_id="deleted-agent")

    assert output["provider"] == "echo"
