"""The `echo` provider: offline and deterministic, for demos and tests. It calls no LLM and
says so in every answer, so nobody mistakes its text for a model's.

It also calls tools, by a syntax of its own (issue 12: the demo and tests run offline):

- the last message is a user message with lines `/call <tool> {json}` (the JSON object is
  optional, default {}): one ToolCall per line, all in one completion, text "". Ids are
  `echo-call-<history length>-<n>`, so they are the same on a replay and unique within a
  conversation. A tool that was not offered, or arguments that are not a JSON object, make
  a plain echo answer that says what is wrong, with no call.
- the last messages are tool results: a text that repeats them, `<tool>: <result>` per line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from app.config import Settings
from app.llm.base import ChatMessage, Completion, ToolCall, ToolSpec
from app.llm.config import LLMConfig

PREFIX = "[echo provider, no LLM called]"
CALL_COMMAND = "/call"


@dataclass(frozen=True)
class _Answer:
    text: str
    calls: tuple[ToolCall, ...] = ()


class EchoProvider:
    """Answers with the last user message; usage counts words, in and out."""

    name = "echo"

    def __init__(self, settings: Settings | None = None, http: httpx.Client | None = None) -> None:
        pass  # the same constructor as the other providers; it needs neither

    def complete(
        self,
        messages: Sequence[ChatMessage],
        system: str,
        config: LLMConfig,
        tools: Sequence[ToolSpec] = (),
    ) -> Completion:
        answer = _answer(messages, tools)
        words_in = len(system.split()) + sum(len(m.content.split()) for m in messages)
        words_out = len(answer.text.split()) + sum(
            1 + len(json.dumps(call.arguments).split()) for call in answer.calls
        )
        usage = {"input_tokens": words_in, "output_tokens": words_out}
        return Completion(answer.text, config.model, self.name, usage, answer.calls)

    def close(self) -> None:
        pass


def _answer(messages: Sequence[ChatMessage], tools: Sequence[ToolSpec]) -> _Answer:
    if messages and messages[-1].role == "tool":
        return _Answer(f"{PREFIX} {_results(messages)}")
    last = next((m.content for m in reversed(messages) if m.role == "user"), "")
    if messages and messages[-1].role == "user":
        lines = [line.strip() for line in last.splitlines()]
        commands = [line for line in lines if _is_call(line)]
        if commands:
            return _calls(commands, tools, last, id_base=len(messages))
    return _Answer(f"{PREFIX} {last}")


def _is_call(line: str) -> bool:
    return line == CALL_COMMAND or line.startswith(CALL_COMMAND + " ")


def _calls(commands: list[str], tools: Sequence[ToolSpec], last: str, id_base: int) -> _Answer:
    offered = {tool.name for tool in tools}
    calls: list[ToolCall] = []
    problems: list[str] = []
    for number, command in enumerate(commands, start=1):
        name, _, raw = command[len(CALL_COMMAND) :].strip().partition(" ")
        if name not in offered:
            known = ", ".join(sorted(offered)) or "none"
            problems.append(f"unknown tool {name!r} (offered: {known})")
            continue
        try:
            arguments = json.loads(raw) if raw.strip() else {}
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            problems.append(f"the arguments of {name!r} are not a JSON object: {raw}")
            continue
        calls.append(ToolCall(f"echo-call-{id_base}-{number}", name, arguments))
    if problems:
        return _Answer(f"{PREFIX} {last}\n" + "\n".join(problems))
    return _Answer("", tuple(calls))


def _results(messages: Sequence[ChatMessage]) -> str:
    """The trailing tool results, each named by the call it answers."""
    names = {call.id: call.name for m in messages for call in m.tool_calls}
    results: list[str] = []
    for message in reversed(messages):
        if message.role != "tool":
            break
        name = names.get(message.tool_call_id or "", "unknown tool")
        label = f"{name} (error)" if message.is_error else name
        results.append(f"{label}: {message.content}")
    return "\n".join(reversed(results))
