"""Local servers that speak the OpenAI and Anthropic wire formats, on a real socket.

Each answers from what it received (the model asked for, the last user message), and the
HttpPeer underneath records every request, so a test can check what reached the "LLM":

    peer = HttpPeer()
    serve_openai(peer)                  # POST /v1/chat/completions
    serve_anthropic(peer)               # POST /v1/messages
    ... call the provider with base_url=peer.url + "/v1" (openai) or peer.url (anthropic)
    chat_requests(peer)[0]["messages"]  # what the SDK sent
"""

from __future__ import annotations

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
