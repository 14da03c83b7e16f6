"""The `openai` provider: Chat Completions through the openai SDK, on any compatible server.

The server is the config's `base_url` (an agent's or a workflow's: reached through the
SSRF-guarded client, like every URL a workflow names) or else OPENAI_BASE_URL (set by ops, so
trusted) or api.openai.com. The key is OPENAI_API_KEY; a compatible server named by a
`base_url` may need none.

Tools go as `tools=[{"type": "function", ...}]`; the calls come back in `message.tool_calls`,
their arguments as JSON text (parsed by parse_tool_arguments: not an object -> RAW_ARGUMENTS).
History is written in the same format: an assistant message with `tool_calls`, a `tool`
message per result. Chat Completions has no error flag on a result, so an error result's
content is prefixed with ERROR_PREFIX for the model to see.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx
import openai
from openai.types.chat import ChatCompletionMessage

from app import time_budget
from app.config import Settings
from app.errors import LLMRequestFailed
from app.llm.base import (
    ChatMessage,
    Completion,
    SdkClients,
    ToolCall,
    ToolSpec,
    parse_tool_arguments,
    provider_error,
)
from app.llm.config import LLMConfig

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: Sent to compatible servers that want no key; the SDK refuses an empty one.
NO_KEY = "no-key-configured"
#: Opens the content of an error result (the wire format has no is_error).
ERROR_PREFIX = "Error: "


class OpenAIProvider:
    """Chat Completions; one SDK client per server, kept for its connection pool."""

    name = "openai"

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
        wire: list[Any] = [{"role": "system", "content": system}] if system else []
        wire += [_wire_message(message) for message in messages]
        wire_tools: list[Any] = [_wire_tool(tool) for tool in tools]
        try:
            response = client.chat.completions.create(
                model=config.model,
                messages=wire,
                temperature=config.temperature,
                max_tokens=config.max_tokens,
                tools=wire_tools or openai.omit,
                # No longer than the running node has left (app/time_budget.py).
                timeout=time_budget.capped(self._settings.llm_timeout_s),
            )
        except openai.OpenAIError as exc:
            raise provider_error(
                self.name, exc, secrets=[self._key()], retries=self._settings.llm_max_retries
            ) from None
        message = response.choices[0].message if response.choices else None
        text = (message.content or "") if message is not None else ""
        calls = _tool_calls(message) if message is not None else ()
        usage = {}
        if response.usage is not None:
            usage = {
                "input_tokens": response.usage.prompt_tokens,
                "output_tokens": response.usage.completion_tokens,
            }
        return Completion(text, response.model or config.model, self.name, usage, calls)

    def close(self) -> None:
        client = self._clients.operator_client()
        if client is not None:
            client.close()

    def _key(self) -> str | None:
        key = self._settings.openai_api_key
        return (key.get_secret_value() or None) if key is not None else None

    def _new_client(self, base_url: str | None) -> openai.OpenAI:
        settings = self._settings
        key = self._key()
        http_client = None
        if base_url is not None:
            # A URL from an agent's config or a workflow: only through the SSRF guard.
            if self._guarded_http is None:
                raise LLMRequestFailed("openai: a base_url needs the SSRF-guarded HTTP client")
            http_client = self._guarded_http
        elif key is None and not settings.openai_base_url:
            raise LLMRequestFailed("openai: OPENAI_API_KEY is not set")
        return openai.OpenAI(
            api_key=key or NO_KEY,
            base_url=base_url or settings.openai_base_url or DEFAULT_BASE_URL,
            http_client=http_client,  # type: ignore[arg-type]  # the SDK takes httpx clients too
            max_retries=settings.llm_max_retries,
            timeout=settings.llm_timeout_s,
        )


def _wire_tool(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.input_schema,
        },
    }


def _wire_message(message: ChatMessage) -> dict[str, Any]:
    """One history message in Chat Completions' format."""
    if message.role == "tool":
        content = ERROR_PREFIX + message.content if message.is_error else message.content
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


def _tool_calls(message: ChatCompletionMessage) -> tuple[ToolCall, ...]:
    calls = []
    for call in message.tool_calls or ():
        if call.type == "function":
            name, arguments = call.function.name, parse_tool_arguments(call.function.arguments)
        else:  # a custom (free-text) tool: never offered, but answered rather than dropped
            name, arguments = call.custom.name, parse_tool_arguments(call.custom.input)
        calls.append(ToolCall(call.id, name, arguments))
    return tuple(calls)
