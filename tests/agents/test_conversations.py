"""Conversation turns on the real PostgreSQL and Redis, against a local OpenAI-compatible server.

The server records what it received, so these tests check what reached the "LLM": the
personality, the remembered turns, the model; and what PostgreSQL keeps.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.agents import LLMConfig, PersonalityTraits, create_agent, update_agent
from app.agents.service import AgentService
from app.errors import LLMRequestFailed
from app.models import AgentMCP, AgentMessage
from tests.agents.conftest import MakeService
from tests.http_peer import HttpPeer
from tests.llm_peers import OPENAI_PATH, chat_requests, message_requests, serve_openai


def new_agent(
    sessions: sessionmaker[Session], peer: HttpPeer, provider: str = "openai", **config: Any
) -> str:
    agent_id = f"agent-{uuid.uuid4().hex[:8]}"
    base_url = f"{peer.url}/v1" if provider == "openai" else peer.url
    with sessions.begin() as session:
        create_agent(
            session,
            agent_id=agent_id,
            agent_name="Sales assistant",
            llm_config=LLMConfig.model_validate(
                {"provider": provider, "base_url": base_url, **config}
            ),
            personality_traits=PersonalityTraits(tone="friendly", role="a sales assistant"),
        )
    return agent_id


def stored(sessions: sessionmaker[Session], agent_id: str, session_id: str) -> list[tuple]:
    with sessions() as session:
        rows = session.execute(
            select(AgentMessage.role, AgentMessage.content)
            .where(AgentMessage.agent_id == agent_id, AgentMessage.session_id == session_id)
            .order_by(AgentMessage.id)
        )
        return [tuple(row) for row in rows]


def conversation(request: dict[str, Any]) -> list[tuple[str, str]]:
    """The non-system messages of a chat request, as (role, content)."""
    return [(m["role"], m["content"]) for m in request["messages"] if m["role"] != "system"]


def system_prompt(request: dict[str, Any]) -> str:
    return str(request["messages"][0]["content"])


def test_the_personality_reaches_the_system_prompt(
    make_service: MakeService, pg_sessions: sessionmaker[Session], llm_peer: HttpPeer
) -> None:
    agent_id = new_agent(pg_sessions, llm_peer)

    make_service().converse(agent_id, "s1", "Hello")

    [sent] = chat_requests(llm_peer)
    assert sent["messages"][0] == {
        "role": "system",
        "content": "You are Sales assistant, a sales assistant.\nTone: friendly.",
    }


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_the_model_from_llm_config_is_used(
    make_service: MakeService,
    pg_sessions: sessionmaker[Session],
    llm_peer: HttpPeer,
    provider: str,
) -> None:
    agent_id = new_agent(pg_sessions, llm_peer, provider, model="model-from-config", max_tokens=77)

    reply = make_service().converse(agent_id, "s1", "Hello")

    [sent] = chat_requests(llm_peer) if provider == "openai" else message_requests(llm_peer)
    assert sent["model"] == "model-from-config"
    assert sent["max_tokens"] == 77
    assert (reply.completion.model, reply.completion.provider) == ("model-from-config", provider)


def test_the_second_message_carries_the_first_exchange(
    make_service: MakeService, pg_sessions: sessionmaker[Session], llm_peer: HttpPeer
) -> None:
    agent_id = new_agent(pg_sessions, llm_peer)
    service = make_service()

    first = service.converse(agent_id, "s1", "My name is Ada.")
    second = service.converse(agent_id, "s1", "What is my name?")

    assert conversation(chat_requests(llm_peer)[1]) == [
        ("user", "My name is Ada."),
        ("assistant", "peer reply to: My name is Ada."),
        ("user", "What is my name?"),
    ]
    assert (first.memory_size, second.memory_size) == (2, 4)
    assert second.completion.text == "peer reply to: What is my name?"


def test_sessions_do_not_share_memory(
    make_service: MakeService, pg_sessions: sessionmaker[Session], llm_peer: HttpPeer
) -> None:
    agent_id = new_agent(pg_sessions, llm_peer)
    service = make_service()

    service.converse(agent_id, "s1", "My name is Ada.")
    service.converse(agent_id, "s2", "What is my name?")

    assert conversation(chat_requests(llm_peer)[1]) == [("user", "What is my name?")]


def test_a_flushed_redis_loses_no_memory(
    make_service: MakeService,
    pg_sessions: sessionmaker[Session],
    llm_peer: HttpPeer,
    cache_redis: redis.Redis,
) -> None:
    agent_id = new_agent(pg_sessions, llm_peer)
    make_service().converse(agent_id, "s1", "one")
    make_service().converse(agent_id, "s1", "two")

    cache_redis.flushdb()
    make_service().converse(agent_id, "s1", "three")

    assert conversation(chat_requests(llm_peer)[2]) == [
        ("user", "one"),
        ("assistant", "peer reply to: one"),
        ("user", "two"),
        ("assistant", "peer reply to: two"),
        ("user", "three"),
    ]
    assert [content for _, content in stored(pg_sessions, agent_id, "s1")][::2] == [
        "one",
        "two",
        "three",
    ]


def test_concurrent_messages_to_one_session_are_both_stored_in_order(
    make_service: MakeService, pg_sessions: sessionmaker[Session], llm_peer: HttpPeer
) -> None:
    serve_openai(llm_peer, delay_s=0.3)  # long enough for the two turns to overlap
    agent_id = new_agent(pg_sessions, llm_peer)
    workers = [make_service(), make_service()]  # two processes' worth: shared Redis + PostgreSQL
    errors: list[BaseException] = []

    def send(service: AgentService, message: str) -> None:
        try:
            service.converse(agent_id, "s1", message)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=send, args=(service, f"message {n}"))
        for n, service in enumerate(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert errors == []
    messages = stored(pg_sessions, agent_id, "s1")
    assert [role for role, _ in messages] == ["user", "assistant", "user", "assistant"]
    first, second = messages[0][1], messages[2][1]
    assert messages[1][1] == f"peer reply to: {first}"
    assert messages[3][1] == f"peer reply to: {second}"
    assert {first, second} == {"message 0", "message 1"}
    # The later turn saw the earlier one: the session's lock serialised them.
    assert conversation(chat_requests(llm_peer)[1])[:2] == list(messages[:2])


def test_a_failed_turn_writes_nothing(
    make_service: MakeService, pg_sessions: sessionmaker[Session], llm_peer: HttpPeer
) -> None:
    agent_id = new_agent(pg_sessions, llm_peer)
    service = make_service()
    service.converse(agent_id, "s1", "one")
    llm_peer.reply(OPENAI_PATH, status=400, json={"error": {"message": "bad request"}})

    with pytest.raises(LLMRequestFailed):
        service.converse(agent_id, "s1", "two")

    assert len(stored(pg_sessions, agent_id, "s1")) == 2
    assert len(service.memory.load(agent_id, "s1").turns) == 1


def test_the_window_keeps_the_last_whole_turns_and_summarises_the_rest(
    make_service: MakeService,
    pg_sessions: sessionmaker[Session],
    llm_peer: HttpPeer,
    cache_redis: redis.Redis,
) -> None:
    agent_id = new_agent(pg_sessions, llm_peer)
    service = make_service(DUALMCP_AGENT_MEMORY_TURNS=2)
    for n in range(1, 5):
        service.converse(agent_id, "s1", f"message {n}")

    fourth = chat_requests(llm_peer)[3]
    assert conversation(fourth) == [
        ("user", "message 2"),
        ("assistant", "peer reply to: message 2"),
        ("user", "message 3"),
        ("assistant", "peer reply to: message 3"),
        ("user", "message 4"),
    ]
    assert system_prompt(fourth).endswith(
        "Summary of the earlier conversation (oldest first):\n"
        "- user: message 1 | assistant: peer reply to: message 1"
    )
    with pg_sessions() as session:
        context = session.get(AgentMCP, agent_id).memory_context  # type: ignore[union-attr]
    assert context["sessions"]["s1"]["summary"].count("\n") == 1  # turns 1 and 2 folded
    # The stored summary, and a summary rebuilt from agent_messages alone, both match.
    cache_redis.flushdb()
    from_stored = service.memory.load(agent_id, "s1")
    cache_redis.flushdb()
    with pg_sessions.begin() as session:
        session.get(AgentMCP, agent_id).memory_context = None  # type: ignore[union-attr]
    rebuilt = service.memory.load(agent_id, "s1")
    assert from_stored == rebuilt
    assert rebuilt.summary.splitlines()[-1].startswith("- user: message 2 |")


def test_an_updated_agent_answers_with_its_new_config_at_once(
    make_service: MakeService, pg_sessions: sessionmaker[Session], llm_peer: HttpPeer
) -> None:
    agent_id = new_agent(pg_sessions, llm_peer, model="old-model")
    service = make_service()
    service.converse(agent_id, "s1", "one")  # the config is now cached

    with pg_sessions.begin() as session:
        update_agent(
            session,
            agent_id,
            llm_config=LLMConfig(
                provider="openai", model="new-model", base_url=f"{llm_peer.url}/v1"
            ),
            personality_traits=PersonalityTraits(tone="formal"),
        )
    service.forget_agent(agent_id)
    service.converse(agent_id, "s1", "two")

    second = chat_requests(llm_peer)[1]
    assert second["model"] == "new-model"
    assert system_prompt(second) == "You are Sales assistant.\nTone: formal."


def test_clearing_a_session_forgets_it_everywhere(
    make_service: MakeService, pg_sessions: sessionmaker[Session], llm_peer: HttpPeer
) -> None:
    agent_id = new_agent(pg_sessions, llm_peer)
    service = make_service()
    service.converse(agent_id, "s1", "one")
    service.converse(agent_id, "s2", "other")

    service.memory.clear(agent_id, "s1")
    service.converse(agent_id, "s1", "two")

    assert conversation(chat_requests(llm_peer)[2]) == [("user", "two")]
    assert len(stored(pg_sessions, agent_id, "s2")) == 2


def test_busy_sessions_of_one_agent_do_not_deadlock_on_its_summary(
    make_service: MakeService, pg_sessions: sessionmaker[Session]
) -> None:
    # Every turn past the first folds one into memory_context, on the one agent row, while
    # other sessions insert messages that reference that row (the echo provider: this test is
    # about PostgreSQL's locks, not the LLM).
    agent_id = f"agent-{uuid.uuid4().hex[:8]}"
    with pg_sessions.begin() as session:
        create_agent(session, agent_id=agent_id, agent_name="Busy", llm_config=LLMConfig())
    service = make_service(DUALMCP_AGENT_MEMORY_TURNS=1)
    errors: list[str] = []

    def chat(session_id: str) -> None:
        try:
            for n in range(15):
                service.converse(agent_id, session_id, f"message {n}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(repr(exc)[:300])

    threads = [threading.Thread(target=chat, args=(f"s{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    with pg_sessions() as session:
        summaries = session.get(AgentMCP, agent_id).memory_context["sessions"]  # type: ignore[union-attr]
    assert sorted(summaries) == [f"s{n}" for n in range(8)]
    assert all(entry["summary"].count("\n") == 13 for entry in summaries.values())
