"""The `anthropic` provider: the Messages API through the anthropic SDK.

`system=` carries the system prompt (the Messages API has no system role). The server is the
config's `base_url` (through the SSRF guard, app/llm/guarded.py), else ANTHROPIC_BASE_URL, else
api.anthropic.com; the key is ANTHROPIC_API_KEY.

Tools go as `tools=[{"name", "description", "input_schema"}]`; the model's calls come back as
`tool_use` blocks. In history an assistant's calls are `tool_use` blocks after its text, and
results are `tool_result` blocks of a user message: the API wants every result of one assistant
turn in the very next user message, so consecutive results, and a user's text that follows
them, are merged into one user message (results first, as the API asks).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import anthropic
import httpx

from app import time_budget
from app.config import Settings
from app.errors import LLMRequestFailed
from app.llm.base import (
    RAW_ARGUMENTS,
    ChatMessage,
    Completion,
    SdkClients,
    ToolCall,
    ToolSpec,
    provider_error,
)
from app.llm.config import LLMConfig
from app.llm.guarded import guarded_httpx2_client

DEFAULT_BASE_URL = "https://api.anthropic.com"
NO_KEY = "no-key-configured"


class _Refused(anthropic.AnthropicError):
    """The SSRF guard's refusal, in a type the SDK raises as is instead of retrying it."""


class AnthropicProvider:
    """Messages API; one SDK client per server, kept for its connection pool."""

    name = "anthropic"

    def __init__(self, settings: Settings, http: httpx.Client | None) -> None:
        self._settings = settings
        self._guarded_http = http
        self._clients = SdkClients(self._new_client)

    def complete(
        self,
        messages: Sequence[ChatMessage],
        system: str,
        config: LLMConfig,
        tools: Sequence[ToolSpec] = (),
    ) -> Completion:
        client = self._clients.get(config.base_url)
        wire: list[Any] = wire_messages(messages)
        wire_tools: list[Any] = [_wire_tool(tool) for tool in tools]
        try:
            response = client.messages.create(
                model=config.model,
                max_tokens=config.max_tokens,
                messages=wire,
                system=system or anthropic.omit,
                tools=wire_tools or anthropic.omit,
                # The SDK's typed signature no longer lists temperature; the wire format does.
                extra_body={"temperature": config.temperature},
                # No longer than the running node has left (app/time_budget.py).
                timeout=time_budget.capped(self._settings.llm_timeout_s),
            )
        except anthropic.AnthropicError as exc:
            raise provider_error(
                self.name, exc, secrets=[self._key()], retries=self._settings.llm_max_retries
            ) from None
        text = "".join(block.text for block in response.content if block.type == "text")
        calls = tuple(
            ToolCall(block.id, block.name, _arguments(block.input))
            for block in response.content
            if block.type == "tool_use"
        )
        usage = {
            "input_tokens": response.usage.input_tokens,
            "output_tokens": response.usage.output_tokens,
        }
        return Completion(text, response.model or config.model, self.name, usage, calls)

    def close(self) -> None:
        client = self._clients.operator_client()
        if client is not None:
            client.close()

    def _key(self) -> str | None:
        key = self._settings.anthropic_api_key
        return (key.get_secret_value() or None) if key is not None else None

    def _new_client(self, base_url: str | None) -> anthropic.Anthropic:
        settings = self._settings
        key = self._key()
        http_client = None
        if base_url is not None:
            if self._guarded_http is None:
                raise LLMRequestFailed("anthropic: a base_url needs the SSRF-guarded HTTP client")
            http_client = guarded_httpx2_client(self._guarded_http, lambda exc: _Refused(str(exc)))
        elif key is None and not settings.anthropic_base_url:
            raise LLMRequestFailed("anthropic: ANTHROPIC_API_KEY is not set")
        return anthropic.Anthropic(
            api_key=key or NO_KEY,
            base_url=base_url or settings.anthropic_base_url or DEFAULT_BASE_URL,
            http_client=http_client,
            max_retries=settings.llm_max_retries,
            timeout=settings.llm_timeout_s,
        )


def wire_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """The history in the Messages API's format, user and assistant alternating."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "is_error": message.is_error,
            }
            if message.content:  # the API refuses empty text; no content reads as empty
                block["content"] = message.content
            _append_user_blocks(wire, [block])
        elif message.role == "user" and _follows_tool_results(wire):
            _append_user_blocks(wire, [{"type": "text", "text": message.content}])
        elif message.role == "assistant" and message.tool_calls:
            blocks: list[dict[str, Any]] = []
            if message.content:
                blocks.append({"type": "text", "text": message.content})
            blocks += [
                {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
                for call in message.tool_calls
            ]
            wire.append({"role": "assistant", "content": blocks})
        else:
            wire.append({"role": message.role, "content": message.content})
    return wire


def _follows_tool_results(wire: list[dict[str, Any]]) -> bool:
    last = wire[-1] if wire else None
    return (
        last is not None
        and last["role"] == "user"
        and isinstance(last["content"], list)
        and any(block["type"] == "tool_result" for block in last["content"])
    )


def _append_user_blocks(wire: list[dict[str, Any]], blocks: list[dict[str, Any]]) -> None:
    """Add to the user message that holds the results of the last assistant turn, or start one."""
    if _follows_tool_results(wire):
        wire[-1]["content"].extend(blocks)
    else:
        wire.append({"role": "user", "content": blocks})


def _wire_tool(tool: ToolSpec) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.description, "input_schema": tool.input_schema}


def _arguments(value: object) -> dict[str, Any]:
    """A tool_use block's input: an object by the API's contract; anything else kept raw."""
    if isinstance(value, dict):
        return value
    return {RAW_ARGUMENTS: value if isinstance(value, str) else json.dumps(value)}
