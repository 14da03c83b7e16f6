"""Local servers that speak the OpenAI and Anthropic wire formats, on a real socket.

Each answers from what it received (the model asked for, the last user message), and the
HttpPeer underneath records every request, so a test can check what reached the "LLM":

    peer = HttpPeer()
    serve_openai(peer)                  # POST /v1/chat/completions
    serve_anthropic(peer)               # POST /v1/messages
    ... call the provider with base_url=peer.url + "/v1" (openai) or peer.url (anthropic)
    chat_requests(peer)[0]["messages"]  # what the SDK sent

Tool calling (`serve_openai_tools`, `serve_anthropic_tools`, on the same paths) plays a model
that calls tools, answering only from the request it got:

- The prompt is the last user message with text. Each of its lines `/call <tool> {json}`
  (JSON optional, default {}) is one call, all in one answer: OpenAI `finish_reason:
  "tool_calls"` with `message.tool_calls` (content null, arguments the JSON text as written,
  valid or not); Anthropic `stop_reason: "tool_use"`, a text block `calling <tools>` and one
  `tool_use` block per call (input the parsed JSON, or the raw text when it is not JSON).
  The peer calls the name it is told, offered or not (as a model may).
- Call ids are `call_<n>_<i>` (OpenAI) and `toolu_<n>_<i>` (Anthropic), n the number of
  messages received: the same on a replay, unique within a conversation.
- After `rounds` answers with calls since the prompt (default 1), the request carries the
  results: the answer is text, `tool results: ` then `<tool>: <content>` per result of the
  last round joined by `; ` (Anthropic marks `<tool> (error): ...` when is_error). With
  `rounds > 1` the same calls are asked for again after each round's results, which is how a
  test reaches a bound on calls or time (`rounds=1000`).
- A prompt without `/call` lines gets the plain reply_text, as serve_openai does.
"""

from __future__ import annotations

import json
from typing import Any

from tests.http_peer import HttpPeer, RecordedRequest, Reply

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"


def reply_text(last_user_message: str) -> str:
    """What both peers answer: recognisable, and different for every message."""
    return f"peer reply to: {last_user_message}"


def _last_user(messages: list[dict[str, Any]]) -> str:
    content = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    if isinstance(content, list):  # content blocks
        return "".join(block.get("text", "") for block in content)
    return str(content)


def openai_chat_completion(request: RecordedRequest) -> dict[str, Any]:
    body = request.json
    text = reply_text(_last_user(body["messages"]))
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


def anthropic_message(request: RecordedRequest) -> dict[str, Any]:
    body = request.json
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [{"type": "text", "text": reply_text(_last_user(body["messages"]))}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 13, "output_tokens": 5},
    }


def serve_openai(peer: HttpPeer, **reply: Any) -> Reply:
    """Answer Chat Completions on the peer; `reply` may add fail_times, delay_s, ..."""
    return peer.reply(OPENAI_PATH, json_from=openai_chat_completion, **reply)


def serve_anthropic(peer: HttpPeer, **reply: Any) -> Reply:
    return peer.reply(ANTHROPIC_PATH, json_from=anthropic_message, **reply)


def chat_requests(peer: HttpPeer) -> list[dict[str, Any]]:
    """The JSON bodies the OpenAI endpoint received, oldest first."""
    return [request.json for request in peer.requests_to(OPENAI_PATH)]


def message_requests(peer: HttpPeer) -> list[dict[str, Any]]:
    return [request.json for request in peer.requests_to(ANTHROPIC_PATH)]


#: Opens the text a tool-calling peer answers once it has the results.
RESULTS_PREFIX = "tool results: "


def call_lines(text: str) -> list[tuple[str, str]]:
    """The `/call <tool> {json}` lines of a prompt, as (tool, the JSON text or "")."""
    calls = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("/call "):
            name, _, arguments = line[len("/call ") :].strip().partition(" ")
            calls.append((name, arguments.strip()))
    return calls


def _openai_tools(request: RecordedRequest, rounds: int) -> dict[str, Any]:
    body = request.json
    messages = body["messages"]
    prompt_at = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    prompt = _text_of(messages[prompt_at]["content"]) if prompt_at >= 0 else ""
    after = messages[prompt_at + 1 :]
    done = sum(1 for m in after if m["role"] == "assistant" and m.get("tool_calls"))
    calls = call_lines(prompt)
    message: dict[str, Any]
    if calls and done < rounds:
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{len(messages)}_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": arguments or "{}"},
                }
                for i, (name, arguments) in enumerate(calls, start=1)
            ],
        }
        finish = "tool_calls"
    else:
        text = _openai_results(after) if done else reply_text(prompt)
        message, finish = {"role": "assistant", "content": text}, "stop"
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


def _openai_results(after_prompt: list[dict[str, Any]]) -> str:
    names = {
        call["id"]: call["function"]["name"]
        for m in after_prompt
        for call in m.get("tool_calls") or ()
    }
    last_round = []
    for m in reversed(after_prompt):
        if m["role"] != "tool":
            break
        last_round.append(f"{names.get(m['tool_call_id'], '?')}: {m['content']}")
    return RESULTS_PREFIX + "; ".join(reversed(last_round))


def _anthropic_tools(request: RecordedRequest, rounds: int) -> dict[str, Any]:
    body = request.json
    messages = body["messages"]
    prompt_at = max(
        (i for i, m in enumerate(messages) if m["role"] == "user" and _text_of(m["content"])),
        default=-1,
    )
    prompt = _text_of(messages[prompt_at]["content"]) if prompt_at >= 0 else ""
    after = messages[prompt_at + 1 :]
    done = sum(1 for m in after if m["role"] == "assistant" and _tool_uses(m))
    calls = call_lines(prompt)
    if calls and done < rounds:
        content: list[dict[str, Any]] = [
            {"type": "text", "text": "calling " + ", ".join(name for name, _ in calls)}
        ]
        content += [
            {
                "type": "tool_use",
                "id": f"toolu_{len(messages)}_{i}",
                "name": name,
                "input": _json_or_text(arguments),
            }
            for i, (name, arguments) in enumerate(calls, start=1)
        ]
        stop = "tool_use"
    else:
        text = _anthropic_results(messages, after) if done else reply_text(prompt)
        content, stop = [{"type": "text", "text": text}], "end_turn"
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 13, "output_tokens": 5},
    }


def _anthropic_results(messages: list[dict[str, Any]], after: list[dict[str, Any]]) -> str:
    names = {use["id"]: use["name"] for m in after for use in _tool_uses(m)}
    last = messages[-1]
    results = []
    if last["role"] == "user" and isinstance(last["content"], list):
        for block in last["content"]:
            if block.get("type") == "tool_result":
                name = names.get(block["tool_use_id"], "?")
                label = f"{name} (error)" if block.get("is_error") else name
                results.append(f"{label}: {_text_of(block.get('content', ''))}")
    return RESULTS_PREFIX + "; ".join(results)


def _tool_uses(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message["content"]
    if not isinstance(content, list):
        return []
    return [block for block in content if block.get("type") == "tool_use"]


def _text_of(content: Any) -> str:
    """A message's (or tool result's) text: a string, or its text blocks joined."""
    if isinstance(content, list):
        return "".join(block.get("text", "") for block in content if block.get("type") == "text")
    return str(content or "")


def _json_or_text(text: str) -> Any:
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return text


def serve_openai_tools(peer: HttpPeer, rounds: int = 1, **reply: Any) -> Reply:
    """Chat Completions that call tools on `/call` lines (module docstring)."""
    return peer.reply(OPENAI_PATH, json_from=lambda r: _openai_tools(r, rounds), **reply)


def serve_anthropic_tools(peer: HttpPeer, rounds: int = 1, **reply: Any) -> Reply:
    """The Messages API calling tools on `/call` lines (module docstring)."""
    return peer.reply(ANTHROPIC_PATH, json_from=lambda r: _anthropic_tools(r, rounds), **reply)
