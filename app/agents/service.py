"""The agent service: one conversation turn, end to end (DESIGN.md: Agents).

A turn reads the agent's profile (cached), takes the session's lock, loads its memory window,
asks the agent's LLM with the personality as the system prompt, and only when that succeeded
stores the whole turn. A failed LLM call writes nothing.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from app.agents.cache import Cache, make_cache
from app.agents.memory import Memory, NewMessage, Window
from app.agents.profiles import AgentProfile, AgentProfiles
from app.agents.remote_tools import RemoteTools
from app.agents.tool_turn import ToolLoop, TurnState
from app.agents.toolbox import CallContext, RemoteOpener, WorkflowToolSource, open_toolbox
from app.config import Settings
from app.credentials import CredentialVault
from app.llm import ChatMessage, Completion, LLMProviders

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

#: Worst-case backoff the SDKs add between retries (their cap is 8 s).
_MAX_BACKOFF_S = 8.0


@dataclass(frozen=True)
class Reply:
    """An agent's answer to one message (DESIGN.md: an agent's reply)."""

    agent_id: str
    session_id: str
    completion: Completion
    #: Messages stored for the session after this turn (user, assistant and tool messages).
    memory_size: int
    #: The turn's tool calls: [{"name", "arguments", "ok", "ms"}].
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    #: Set when a bound ended the turn: "max_tool_calls" or "deadline".
    stopped: str | None = None

    def to_dict(self) -> dict[str, object]:
        shaped: dict[str, object] = {
            "agent_id": self.agent_id,
            "session_id": self.session_id,
            "reply": self.completion.text,
            "memory_size": self.memory_size,
            "provider": self.completion.provider,
            "model": self.completion.model,
            "usage": dict(self.completion.usage),
            "tool_calls": list(self.tool_calls),
        }
        if self.stopped is not None:
            shaped["stopped"] = self.stopped
        return shaped


def new_session_id() -> str:
    """A fresh conversation's id, for a message that names none."""
    return "session-" + secrets.token_hex(8)


def new_turn_id() -> str:
    return "turn-" + secrets.token_hex(12)


class AgentService:
    """Agents' conversations: profiles, memory and LLM calls of one process."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        cache: Cache,
        llm: LLMProviders,
        *,
        workflow_tools: WorkflowToolSource | None = None,
        remote: RemoteOpener | None = None,
    ) -> None:
        self.settings = settings
        self.llm = llm
        self.profiles = AgentProfiles(sessions, cache, settings.agent_config_ttl_s)
        # A turn holds its session's lock for as long as its LLM calls may take, retries
        # included, and its tool calls (bounded by the turn's deadline).
        turn_budget_s = (
            settings.llm_timeout_s * (settings.llm_max_retries + 1)
            + _MAX_BACKOFF_S * settings.llm_max_retries
            + settings.agent_turn_deadline_s
            + 30
        )
        self.memory = Memory(
            sessions,
            cache,
            window_turns=settings.agent_memory_turns,
            ttl_s=settings.agent_memory_ttl_s,
            lock_ttl_s=turn_budget_s,
            lock_wait_s=turn_budget_s,
        )
        #: Workflows as tools: None where runs cannot be published (the front end).
        self.workflow_tools = workflow_tools
        self.remote = remote
        self.tool_loop = ToolLoop(settings, llm, self.memory)

    def converse(
        self, agent_id: str, session_id: str, message: str, *, turn_id: str | None = None
    ) -> Reply:
        """One turn: the agent answers `message` with its memory of the session, calling its
        tools as the model asks. A `turn_id` seen before resumes that turn where it stopped
        (or returns its reply, when it had finished)."""
        profile = self.profiles.get(agent_id)
        resumable = turn_id is not None
        turn_id = turn_id or new_turn_id()
        with self.memory.lock(agent_id, session_id, owner=turn_id):
            state = TurnState(agent_id, session_id, turn_id, message)
            if resumable:
                state.recorded = self.memory.turn_messages(agent_id, session_id, turn_id)
                done = state.final_reply()
                if done is not None:
                    return self._replayed(profile, state, done)
            window = _without_turn(self.memory.load(agent_id, session_id), state.recorded)
            if not profile.tools and not state.recorded:
                completion = self.ask(profile, window, message)
                _, size = self.memory.finish_turn(
                    agent_id, session_id, window, [], _plain_turn(message, completion), turn_id
                )
                return Reply(agent_id, session_id, completion, size)
            caller = CallContext(agent_id, session_id, turn_id)
            with open_toolbox(
                profile.tools,
                caller,
                workflows=self.workflow_tools,
                remote=self.remote,
                max_chars=self.settings.agent_tool_result_max_chars,
            ) as toolbox:
                result = self.tool_loop.run(profile, window, state, toolbox)
        return Reply(
            agent_id,
            session_id,
            result.completion,
            result.memory_size,
            result.tool_calls,
            result.stopped,
        )

    def _replayed(self, profile: AgentProfile, state: TurnState, text: str) -> Reply:
        """The reply of a turn that had finished before its task was delivered again."""
        config = profile.llm_config
        completion = Completion(text, config.model, config.provider, {})
        size = self.memory.size(state.agent_id, state.session_id)
        return Reply(state.agent_id, state.session_id, completion, size, state.call_log())

    def ask(self, profile: AgentProfile, window: Window, message: str) -> Completion:
        """The agent's LLM, given its personality, the remembered turns and the new message."""
        messages = [*window.messages(), ChatMessage("user", message)]
        return self.llm.complete(
            messages, profile.system_prompt(window.summary), profile.llm_config
        )

    def forget_agent(self, agent_id: str, *, deleted: bool = False) -> None:
        """After the commit that changed (or deleted) an agent: drop what is cached of it.
        Never raises: the change is committed, and the config cache's TTL bounds staleness."""
        try:
            self.profiles.forget(agent_id)
            if deleted:
                self.memory.forget_cached(agent_id)
        except Exception:
            log.warning("could not drop the cached config of agent %s", agent_id, exc_info=True)

    def close(self) -> None:
        self.llm.close()


def _plain_turn(message: str, completion: Completion) -> list[NewMessage]:
    return [NewMessage("user", message), NewMessage("assistant", completion.text)]


def _without_turn(window: Window, recorded: list[dict[str, Any]]) -> Window:
    """The window without the turn under way (a window rebuilt from PostgreSQL mid-turn holds
    what the turn recorded so far; the loop adds those messages itself)."""
    if not recorded:
        return window
    first = recorded[0]["id"]
    return Window(window.summary, [turn for turn in window.turns if turn[0]["id"] < first])


def make_agent_service(
    settings: Settings,
    sessions: sessionmaker[Session],
    http: httpx.Client | None,
    *,
    workflow_tools: WorkflowToolSource | None = None,
) -> AgentService:
    """Production wiring: the configured cache (Redis, or in-process) and the providers, whose
    config-named servers are reached through `http`, the SSRF-guarded client. A worker passes
    `workflow_tools` (app/workflows/agent_tools.py), so its agents may call workflows."""
    cache = make_cache(settings.memory_cache_url)
    remote = None
    if http is not None and workflow_tools is not None:  # a worker: remote tools too
        remote = RemoteTools(settings, http, CredentialVault(sessions, settings))
    return AgentService(
        settings,
        sessions,
        cache,
        LLMProviders(settings, http),
        workflow_tools=workflow_tools,
        remote=remote,
    )
