"""The `openai` provider: Chat Completions through the openai SDK, on any compatible server.

The server is the config's `base_url` (an agent's or a workflow's: reached through the
SSRF-guarded client, like every URL a workflow names) or else OPENAI_BASE_URL (set by ops, so
trusted) or api.openai.com. The key is OPENAI_API_KEY; a compatible server named by a
`base_url` may need none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import openai

from app.config import Settings
from app.errors import LLMRequestFailed
from app.llm.base import ChatMessage, Completion, SdkClients, provider_error
from app.llm.config import LLMConfig

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: Sent to compatible servers that want no key; the SDK refuses an empty one.
NO_KEY = "no-key-configured"


class OpenAIProvider:
    """Chat Completions; one SDK client per server, kept for its connection pool."""

    name = "openai"

    def __init__(self, settings: Settings, http: httpx.Client | None) -> None:
        self._settings = settings
        self._guarded_http = http
        self._clients = SdkClients(self._new_client)

    def complete(
        self, messages: Sequence[ChatMessage], system: str, config: LLMConfig
    ) -> Completion:
        client = self._clients.get(config.base_url)
        wire: list[Any] = [{"role": "system", "content": system}] if system else []
        wire += [{"role": message.role, "content": message.content} for message in messages]
        try:
            response = client.chat.completions.create(
                model=config.model,
                messages=wire,
                temperature=config.temperature,
                max_tokens=config.max_tokens,
            )
        except openai.OpenAIError as exc:
            raise provider_error(
                self.name, exc, secrets=[self._key()], retries=self._settings.llm_max_retries
            ) from None
        text = response.choices[0].message.content or "" if response.choices else ""
        usage = {}
        if response.usage is not None:
            usage = {
                "input_tokens": response.usage.prompt_tokens,
                "output_tokens": response.usage.completion_tokens,
            }
        return Completion(text, response.model or config.model, self.name, usage)

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
