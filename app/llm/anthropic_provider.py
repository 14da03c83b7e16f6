"""The `anthropic` provider: the Messages API through the anthropic SDK.

`system=` carries the system prompt (the Messages API has no system role). The server is the
config's `base_url` (through the SSRF guard, app/llm/guarded.py), else ANTHROPIC_BASE_URL, else
api.anthropic.com; the key is ANTHROPIC_API_KEY.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anthropic
import httpx

from app.config import Settings
from app.errors import LLMRequestFailed
from app.llm.base import ChatMessage, Completion, SdkClients, provider_error
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
        self, messages: Sequence[ChatMessage], system: str, config: LLMConfig
    ) -> Completion:
        client = self._clients.get(config.base_url)
        wire: list[Any] = [{"role": m.role, "content": m.content} for m in messages]
        try:
            response = client.messages.create(
                model=config.model,
                max_tokens=config.max_tokens,
                messages=wire,
                system=system or anthropic.omit,
                # The SDK's typed signature no longer lists temperature; the wire format does.
                extra_body={"temperature": config.temperature},
            )
        except anthropic.AnthropicError as exc:
            raise provider_error(
                self.name, exc, secrets=[self._key()], retries=self._settings.llm_max_retries
            ) from None
        text = "".join(block.text for block in response.content if block.type == "text")
        usage = {
            "input_tokens": response.usage.input_tokens,
            "output_tokens": response.usage.output_tokens,
        }
        return Completion(text, response.model or config.model, self.name, usage)

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
