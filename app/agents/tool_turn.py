"""One agent turn with tools: a bounded loop of model calls and tool calls (DESIGN.md: Agents
that act).

The model answers, or asks for tool calls; the calls run (app/agents/toolbox.py) and their
results go back to it, until it answers or a bound stops the loop: at most
DUALMCP_AGENT_MAX_TOOL_CALLS calls, each within DUALMCP_AGENT_TOOL_TIMEOUT_S, the whole turn
within DUALMCP_AGENT_TURN_DEADLINE_S. A bound ends the turn with a reply saying so and
`stopped`, never an exception.

Every call and its result is stored (app/agents/memory.py `record`) before the next model call,
so a turn whose worker died is taken up by another (same turn id) from its last recorded result,
repeating no recorded call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.agents.memory import Memory, NewMessage, Window, chat_message
from app.agents.profiles import AgentProfile
from app.agents.toolbox import Toolbox
from app.config import Settings
from app.llm import ChatMessage, Completion, LLMProviders, ToolCall, ToolSpec
from app.mcp.tool_names import ToolNames

STOPPED_MAX_CALLS = "max_tool_calls"
STOPPED_DEADLINE = "deadline"


@dataclass
class TurnState:
    """What one turn has done so far: its stored messages, the calls made, tokens used."""

    agent_id: str
    session_id: str
    turn_id: str
    message: str
    #: This turn's messages already in agent_messages, oldest first (the user's one first).
    recorded: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)

    def calls_made(self) -> int:
        return sum(1 for m in self.recorded if m["role"] == "tool")

    def call_log(self) -> list[dict[str, Any]]:
        """`[{name, arguments, ok, ms}]` of the calls whose results are recorded."""
        asked = {call["id"]: call for m in self.recorded for call in m.get("tool_calls") or ()}
        log = []
        for m in self.recorded:
            result = m.get("tool_result")
            if m["role"] == "tool" and result:
                call = asked.get(result["id"], {})
                log.append(
                    {
                        "name": result.get("name") or call.get("name"),
                        "arguments": call.get("arguments") or {},
                        "ok": bool(result.get("ok")),
                        "ms": int(result.get("ms") or 0),
                    }
                )
        return log

    def pending_calls(self) -> list[dict[str, Any]]:
        """Calls the last recorded assistant message asked for whose results are not stored."""
        answered = {
            (m.get("tool_result") or {}).get("id") for m in self.recorded if m["role"] == "tool"
        }
        for m in reversed(self.recorded):
            if m["role"] == "assistant" and m.get("tool_calls"):
                return [call for call in m["tool_calls"] if call["id"] not in answered]
        return []

    def final_reply(self) -> str | None:
        """The reply, when this turn was already finished (a redelivered task)."""
        last = self.recorded[-1] if self.recorded else None
        if last is not None and last["role"] == "assistant" and not last.get("tool_calls"):
            return str(last["content"])
        return None

    def add_usage(self, usage: dict[str, int]) -> None:
        for key, value in usage.items():
            self.usage[key] = self.usage.get(key, 0) + value


@dataclass(frozen=True)
class TurnResult:
    completion: Completion
    tool_calls: list[dict[str, Any]]
    stopped: str | None
    window: Window
    memory_size: int


class ToolLoop:
    """Runs a turn's loop for one agent service (its LLMs, memory and settings)."""

    def __init__(self, settings: Settings, llm: LLMProviders, memory: Memory) -> None:
        self.settings = settings
        self.llm = llm
        self.memory = memory

    def run(
        self, profile: AgentProfile, window: Window, state: TurnState, toolbox: Toolbox
    ) -> TurnResult:
        settings = self.settings
        deadline = time.monotonic() + settings.agent_turn_deadline_s
        names = ToolNames(_names_in(toolbox.specs, window, state.recorded))
        wire_specs = [
            ToolSpec(names.wire(spec.name), spec.description, spec.input_schema)
            for spec in toolbox.specs
        ]
        pending = state.pending_calls()
        while True:
            for call in pending:
                if time.monotonic() >= deadline:
                    return self._stop(profile, window, state, STOPPED_DEADLINE)
                self._call(toolbox, state, call, deadline)
            if time.monotonic() >= deadline:
                return self._stop(profile, window, state, STOPPED_DEADLINE)
            completion = self.llm.complete(
                _history(window, state, names),
                profile.system_prompt(window.summary),
                profile.llm_config,
                wire_specs,
            )
            state.add_usage(completion.usage)
            if not completion.tool_calls:
                return self._finish(window, state, completion)
            if state.calls_made() + len(completion.tool_calls) > settings.agent_max_tool_calls:
                return self._stop(profile, window, state, STOPPED_MAX_CALLS)
            pending = [
                {
                    "id": call.id,
                    "name": names.original(call.name) or call.name,
                    "arguments": call.arguments,
                }
                for call in completion.tool_calls
            ]
            asked = [NewMessage("assistant", completion.text, tool_calls=pending)]
            if not state.recorded:
                asked.insert(0, NewMessage("user", state.message))
            state.recorded += self.memory.record(
                state.agent_id, state.session_id, state.turn_id, asked
            )

    def _call(
        self, toolbox: Toolbox, state: TurnState, call: dict[str, Any], deadline: float
    ) -> None:
        index = state.calls_made()
        timeout_s = min(self.settings.agent_tool_timeout_s, deadline - time.monotonic())
        outcome = toolbox.call(
            call["name"], call.get("arguments") or {}, f"{state.turn_id}:{index}", timeout_s
        )
        result = {"id": call["id"], "name": call["name"], "ok": outcome.ok, "ms": outcome.ms}
        state.recorded += self.memory.record(
            state.agent_id,
            state.session_id,
            state.turn_id,
            [NewMessage("tool", outcome.content, tool_result=result)],
        )

    def _finish(self, window: Window, state: TurnState, completion: Completion) -> TurnResult:
        final = Completion(
            completion.text, completion.model, completion.provider, dict(state.usage)
        )
        return self._close(window, state, final, None)

    def _stop(
        self, profile: AgentProfile, window: Window, state: TurnState, why: str
    ) -> TurnResult:
        if why == STOPPED_MAX_CALLS:
            limit = self.settings.agent_max_tool_calls
            text = f"I stopped before finishing: this turn reached its limit of {limit} tool calls."
        else:
            limit_s = self.settings.agent_turn_deadline_s
            text = f"I stopped before finishing: this turn ran out of its {limit_s:g} s."
        # Every call asked for needs a result in the history (Anthropic refuses it otherwise).
        unanswered = [
            NewMessage(
                "tool",
                "not run: the turn was stopped first",
                tool_result={"id": call["id"], "name": call["name"], "ok": False, "ms": 0},
            )
            for call in state.pending_calls()
        ]
        if unanswered:
            state.recorded += self.memory.record(
                state.agent_id, state.session_id, state.turn_id, unanswered
            )
        config = profile.llm_config
        stop = Completion(text, config.model, config.provider, dict(state.usage))
        return self._close(window, state, stop, why)

    def _close(
        self, window: Window, state: TurnState, completion: Completion, stopped: str | None
    ) -> TurnResult:
        new = [NewMessage("assistant", completion.text)]
        if not state.recorded:
            new.insert(0, NewMessage("user", state.message))
        updated, size = self.memory.finish_turn(
            state.agent_id, state.session_id, window, state.recorded, new, state.turn_id
        )
        return TurnResult(completion, state.call_log(), stopped, updated, size)


def _names_in(
    specs: Sequence[ToolSpec], window: Window, recorded: Sequence[dict[str, Any]]
) -> list[str]:
    """Every tool name the model may see: offered now, or named in the remembered history."""
    names = [spec.name for spec in specs]
    history = [m for turn in window.turns for m in turn] + list(recorded)
    names += [call["name"] for m in history for call in m.get("tool_calls") or ()]
    return list(dict.fromkeys(names))


def _history(window: Window, state: TurnState, names: ToolNames) -> list[ChatMessage]:
    """Remembered turns, the user's message and this turn's calls and results, with tool names
    as the provider knows them (names of tools no longer offered keep a mapped name too)."""
    stored = [m for turn in window.turns for m in turn]
    if not state.recorded:
        stored.append({"role": "user", "content": state.message})
    stored += state.recorded
    messages = []
    for message in stored:
        chat = chat_message(message)
        if chat.tool_calls:
            calls = tuple(
                ToolCall(c.id, _wire_name(names, c.name), c.arguments) for c in chat.tool_calls
            )
            chat = ChatMessage(chat.role, chat.content, tool_calls=calls)
        messages.append(chat)
    return messages


def _wire_name(names: ToolNames, name: str) -> str:
    try:
        return names.wire(name)
    except KeyError:
        return name
