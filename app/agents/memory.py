"""Memory per (agent, session): the last N whole turns in a Redis list, PostgreSQL behind it.

- `agent_messages` holds every message; its `id` is the sequence (assigned under the session's
  lock, so it is the order the conversation happened in, whatever the clocks say). A turn with
  tools holds more than two: the user's message, an assistant message naming its tool calls, a
  `tool` message per result, ..., the reply; each is stored as it happens (`record`), so a turn
  taken over by another worker finds what was already done (`turn_messages`).
- The Redis list `dualmcp:memory:<agent>:<session>` holds a header (the rolling summary) and
  then one item per whole turn (a message, its tool calls and results, its reply), the last N
  of them, with a TTL. Its
  header is always there, so an empty conversation is cached too.
- A missing list (TTL, eviction, FLUSHDB) is rebuilt from PostgreSQL: nothing is lost.
- Turns that fall out of the window are folded into the session's rolling summary, stored in
  `agent_mcps.memory_context` (DESIGN.md: Data) in the same transaction as the messages.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.agents.cache import Cache
from app.agents.summary import REBUILD_TURNS, fold
from app.engine.storable_text import make_storable
from app.errors import NotFound
from app.llm import ChatMessage, ToolCall
from app.models import AgentMCP, AgentMessage, utcnow

log = logging.getLogger(__name__)

KEY_PREFIX = "dualmcp:memory:"
LOCK_PREFIX = "dualmcp:lock:memory:"
#: Summaries kept in one agent's memory_context; older sessions' are rebuilt when next used.
MAX_STORED_SUMMARIES = 200

Turn = list[dict[str, Any]]


@dataclass(frozen=True)
class Window:
    """What the agent remembers of a session: a summary of old turns, the recent ones verbatim."""

    summary: str = ""
    turns: list[Turn] = field(default_factory=list)

    def messages(self) -> list[ChatMessage]:
        return [chat_message(m) for turn in self.turns for m in turn]


@dataclass(frozen=True)
class NewMessage:
    """A message to store: a tool call's result carries `tool_result` {"id", "name", "ok", "ms"},
    an assistant message that asks for calls carries `tool_calls` [{"id", "name", "arguments"}]."""

    role: str
    content: str
    tool_calls: list[dict[str, Any]] | None = None
    tool_result: dict[str, Any] | None = None


def chat_message(stored: dict[str, Any]) -> ChatMessage:
    """A stored message as the LLM interface takes it (each provider writes its own format)."""
    calls = tuple(
        ToolCall(call["id"], call["name"], call.get("arguments") or {})
        for call in stored.get("tool_calls") or ()
    )
    result = stored.get("tool_result") or {}
    return ChatMessage(
        stored["role"],
        stored["content"],
        tool_calls=calls,
        tool_call_id=result.get("id"),
        is_error=result.get("ok") is False,
    )


def memory_key(agent_id: str, session_id: str) -> str:
    return f"{KEY_PREFIX}{agent_id}:{session_id}"


def memory_prefix(agent_id: str) -> str:
    """Agent ids hold no `:`, so this prefix matches this agent's sessions only."""
    return f"{KEY_PREFIX}{agent_id}:"


class Memory:
    """Reads and writes one agent session's memory; callers hold `lock` around a turn."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        cache: Cache,
        *,
        window_turns: int,
        ttl_s: int,
        lock_ttl_s: float,
        lock_wait_s: float,
    ) -> None:
        self._sessions = sessions
        self._cache = cache
        self._window_turns = window_turns
        self._ttl_s = ttl_s
        self._lock_ttl_s = lock_ttl_s
        self._lock_wait_s = lock_wait_s

    @contextmanager
    def lock(self, agent_id: str, session_id: str, owner: str | None = None) -> Iterator[None]:
        """One turn at a time per session, across every worker: both messages are stored, in
        order, and the second sees the first. A turn taken over after its worker died (the
        same `owner`, its turn id) takes the lock over instead of waiting for it to expire."""
        with self._cache.lock(
            f"{LOCK_PREFIX}{agent_id}:{session_id}",
            self._lock_ttl_s,
            self._lock_wait_s,
            owner=owner,
        ):
            yield

    def load(self, agent_id: str, session_id: str) -> Window:
        """The session's window: from the cache, or rebuilt from PostgreSQL and cached."""
        cached = self._cache.read_list(memory_key(agent_id, session_id))
        if cached:
            header = json.loads(cached[0])
            return Window(header["summary"], [json.loads(item) for item in cached[1:]])
        window = self._load_from_database(agent_id, session_id)
        self._cache_window(agent_id, session_id, window)
        return window

    def append(
        self, agent_id: str, session_id: str, window: Window, message: str, reply: str
    ) -> tuple[Window, int]:
        """Store a whole turn (PostgreSQL first, then the cache); returns the new window and
        how many messages the session has stored."""
        new = [NewMessage("user", message), NewMessage("assistant", reply)]
        return self.finish_turn(agent_id, session_id, window, [], new)

    def record(
        self, agent_id: str, session_id: str, turn_id: str | None, new: Sequence[NewMessage]
    ) -> list[dict[str, Any]]:
        """Store messages of a turn under way (its tool calls and results), in one transaction,
        before the turn goes on: what was done is never done twice. Returns them as stored."""
        now = utcnow()
        try:
            with self._sessions.begin() as session:
                return [_stored(session, agent_id, session_id, m, now, turn_id) for m in new]
        except IntegrityError:
            raise NotFound(f"no agent with id {agent_id!r}") from None

    def finish_turn(
        self,
        agent_id: str,
        session_id: str,
        window: Window,
        recorded: Sequence[dict[str, Any]],
        new: Sequence[NewMessage],
        turn_id: str | None = None,
    ) -> tuple[Window, int]:
        """Store the turn's last messages, then fold it (the `recorded` messages and these)
        into the window and the cache. Returns the new window and the session's message count."""
        now = utcnow()
        try:
            with self._sessions.begin() as session:
                turn = [*recorded]
                turn += [_stored(session, agent_id, session_id, m, now, turn_id) for m in new]
                turns = [*window.turns, turn]
                cut = max(len(turns) - self._window_turns, 0)
                evicted, kept = turns[:cut], turns[cut:]
                summary = window.summary
                if evicted:
                    summary = fold(summary, evicted)
                    through = evicted[-1][-1]["id"]
                    _store_summary(session, agent_id, session_id, summary, through, now)
                size = session.scalar(
                    select(func.count()).where(*_of_session(agent_id, session_id))
                )
        except IntegrityError:
            raise NotFound(f"no agent with id {agent_id!r}") from None
        updated = Window(summary, kept)
        self._cache_window(agent_id, session_id, updated)
        return updated, int(size or 0)

    def size(self, agent_id: str, session_id: str) -> int:
        """How many messages the session has stored."""
        with self._sessions() as session:
            count = session.scalar(select(func.count()).where(*_of_session(agent_id, session_id)))
        return int(count or 0)

    def turn_messages(self, agent_id: str, session_id: str, turn_id: str) -> list[dict[str, Any]]:
        """What a turn already stored, oldest first: a turn resumed on another worker goes on
        from its last recorded result."""
        with self._sessions() as session:
            rows = session.scalars(
                select(AgentMessage)
                .where(*_of_session(agent_id, session_id), AgentMessage.turn_id == turn_id)
                .order_by(AgentMessage.id)
            )
            return [_as_dict(row) for row in rows]

    def history(self, agent_id: str, session_id: str, limit: int) -> list[dict[str, Any]]:
        """The session's last `limit` stored messages, oldest first (PostgreSQL, not the cache)."""
        with self._sessions() as session:
            rows = session.execute(
                select(AgentMessage)
                .where(*_of_session(agent_id, session_id))
                .order_by(AgentMessage.id.desc())
                .limit(limit)
            ).scalars()
            return [_as_dict(row) for row in reversed(list(rows))]

    def clear(self, agent_id: str, session_id: str | None) -> None:
        """Forget one session (under its lock), or every session of the agent."""
        if session_id is None:
            with self._sessions.begin() as session:
                session.execute(delete(AgentMessage).where(AgentMessage.agent_id == agent_id))
                session.execute(
                    update(AgentMCP)
                    .where(AgentMCP.agent_id == agent_id)
                    .values(memory_context=None, updated_at=AgentMCP.updated_at)
                )
            self._cache.delete_prefix(memory_prefix(agent_id))
            return
        with self.lock(agent_id, session_id), self._sessions.begin() as session:
            session.execute(delete(AgentMessage).where(*_of_session(agent_id, session_id)))
            _store_summary(session, agent_id, session_id, None, None, utcnow())
            self._cache.delete(memory_key(agent_id, session_id))

    def forget_cached(self, agent_id: str) -> None:
        """Drop the agent's cached windows (its rows are gone: the agent was deleted)."""
        self._cache.delete_prefix(memory_prefix(agent_id))

    def _load_from_database(self, agent_id: str, session_id: str) -> Window:
        with self._sessions() as session:
            turns = _last_turns(session, agent_id, session_id, self._window_turns, before=None)
            if not turns:
                return Window()
            first_id = turns[0][0]["id"]
            before = session.scalar(
                select(func.max(AgentMessage.id)).where(
                    *_of_session(agent_id, session_id), AgentMessage.id < first_id
                )
            )
            if before is None:
                return Window("", turns)
            stored = _stored_summaries(session, agent_id).get(session_id) or {}
            if stored.get("through") == before:
                return Window(str(stored.get("summary") or ""), turns)
            # Not stored (or stored for another window size): rebuild it, exactly.
            older = _last_turns(session, agent_id, session_id, REBUILD_TURNS, before=first_id)
            return Window(fold("", older), turns)

    def _cache_window(self, agent_id: str, session_id: str, window: Window) -> None:
        items = [json.dumps({"summary": window.summary})]
        items += [json.dumps(turn) for turn in window.turns]
        key = memory_key(agent_id, session_id)
        try:
            self._cache.replace_list(key, items, self._ttl_s)
        except Exception:
            # PostgreSQL already has the turn; a stale cache must not outlive this failure.
            log.warning("could not cache the memory of %s; dropping it", key, exc_info=True)
            try:
                self._cache.delete(key)
            except Exception:
                log.warning("could not drop the cached memory of %s", key, exc_info=True)


def _of_session(agent_id: str, session_id: str) -> tuple[Any, Any]:
    return AgentMessage.agent_id == agent_id, AgentMessage.session_id == session_id


def _stored(
    session: Session,
    agent_id: str,
    session_id: str,
    message: NewMessage,
    now: datetime,
    turn_id: str | None,
) -> dict[str, Any]:
    # One flush per message: the ids (the sequence) follow the order of the conversation.
    # A model's reply or a remote tool's result may hold what PostgreSQL cannot store.
    row = AgentMessage(
        agent_id=agent_id,
        session_id=session_id,
        role=message.role,
        content=make_storable(message.content),
        tool_calls=make_storable(message.tool_calls),
        tool_result=make_storable(message.tool_result),
        turn_id=turn_id,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return _as_dict(row)


def _as_dict(row: AgentMessage) -> dict[str, Any]:
    shaped: dict[str, Any] = {
        "id": row.id,
        "role": row.role,
        "content": row.content,
        "created_at": row.created_at.isoformat().replace("+00:00", "Z"),
    }
    if row.tool_calls:
        shaped["tool_calls"] = row.tool_calls
    if row.tool_result:
        shaped["tool_result"] = row.tool_result
    return shaped


def _last_turns(
    session: Session, agent_id: str, session_id: str, turns: int, before: int | None
) -> list[Turn]:
    """The last `turns` whole turns (of messages before id `before`), oldest first. A turn is
    two messages, or more with tool calls: it starts at the turn-th newest user message."""
    conditions = [*_of_session(agent_id, session_id)]
    if before is not None:
        conditions.append(AgentMessage.id < before)
    first = session.scalar(
        select(AgentMessage.id)
        .where(*conditions, AgentMessage.role == "user")
        .order_by(AgentMessage.id.desc())
        .offset(turns - 1)
        .limit(1)
    )
    if first is not None:
        conditions.append(AgentMessage.id >= first)
    rows = session.scalars(select(AgentMessage).where(*conditions).order_by(AgentMessage.id))
    return group_turns([_as_dict(row) for row in rows])[-turns:]


def group_turns(messages: Sequence[dict[str, Any]]) -> list[Turn]:
    """Messages (oldest first) as whole turns: each starts at a user message. A reply whose
    message was cut off by a query's limit is dropped, never shown as a turn of its own."""
    turns: list[Turn] = []
    for message in messages:
        if message["role"] == "user":
            turns.append([message])
        elif turns:
            turns[-1].append(message)
    return turns


def _stored_summaries(session: Session, agent_id: str, *, lock: bool = False) -> dict[str, Any]:
    query = select(AgentMCP.memory_context).where(AgentMCP.agent_id == agent_id)
    # FOR NO KEY UPDATE: it does not wait for the key-share locks that concurrent turns'
    # message inserts hold on the agent row (their foreign key), which FOR UPDATE would, and
    # two such turns would deadlock.
    locked = query.with_for_update(key_share=True) if lock else query
    context = session.execute(locked).scalar()
    sessions = (context or {}).get("sessions") if isinstance(context, dict) else None
    return dict(sessions) if isinstance(sessions, dict) else {}


def _store_summary(
    session: Session,
    agent_id: str,
    session_id: str,
    summary: str | None,
    through: int | None,
    now: datetime,
) -> None:
    """Set (or, with None, remove) the session's summary in memory_context; the agent row is
    locked so concurrent sessions of one agent do not overwrite each other's."""
    summaries = _stored_summaries(session, agent_id, lock=True)
    summaries.pop(session_id, None)
    if summary is not None:
        summaries[session_id] = {"summary": summary, "through": through, "at": now.isoformat()}
        if len(summaries) > MAX_STORED_SUMMARIES:
            newest = sorted(summaries.items(), key=lambda item: item[1].get("at", ""))
            summaries = dict(newest[-MAX_STORED_SUMMARIES:])
    session.execute(
        update(AgentMCP)
        .where(AgentMCP.agent_id == agent_id)
        .values(
            memory_context={"sessions": summaries} if summaries else None,
            updated_at=AgentMCP.updated_at,  # memory is not an edit of the agent
        )
    )
