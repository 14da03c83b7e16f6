"""LLM providers behind one small interface: openai, anthropic, echo (offline).

`LLMProviders` is the per-process registry: provider name -> a lazily imported provider, so a
process that only ever uses `echo` never imports an SDK, and SDK clients (with their connection
pools) are made once and reused.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from importlib import import_module

import httpx
from pydantic import SecretStr

from app.config import Settings
from app.errors import LLMRequestFailed
from app.llm.base import (
    ChatMessage,
    Completion,
    Provider,
    ToolCall,
    ToolSpec,
    provider_error,
    redact,
)
from app.llm.config import DEFAULT_MODELS, LLMConfig, ProviderName
from app.metrics import record_llm_tokens

__all__ = [
    "DEFAULT_MODELS",
    "PROVIDERS",
    "ChatMessage",
    "Completion",
    "LLMConfig",
    "LLMProviders",
    "Provider",
    "ProviderName",
    "ToolCall",
    "ToolSpec",
    "provider_error",
    "redact",
]

#: Provider name -> "module:Class" (imported on first use).
PROVIDERS: dict[str, str] = {
    "openai": "app.llm.openai_provider:OpenAIProvider",
    "anthropic": "app.llm.anthropic_provider:AnthropicProvider",
    "echo": "app.llm.echo:EchoProvider",
}


class LLMProviders:
    """The providers of one process, given its settings and its SSRF-guarded HTTP client."""

    def __init__(self, settings: Settings, http: httpx.Client | None) -> None:
        self._settings = settings
        self._http = http
        self._made: dict[str, Provider] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Provider:
        with self._lock:
            provider = self._made.get(name)
            if provider is None:
                path = PROVIDERS.get(name)
                if path is None:
                    known = ", ".join(sorted(PROVIDERS))
                    raise LLMRequestFailed(f"no LLM provider {name!r} (known: {known})")
                module_name, _, class_name = path.partition(":")
                provider_class = getattr(import_module(module_name), class_name)
                provider = self._made[name] = provider_class(self._settings, self._http)
            return provider

    def configured(self, config: LLMConfig) -> bool:
        """Whether `config`'s provider can be reached: a key or a server is configured."""
        settings = self._settings
        if config.provider == "openai":
            key = settings.openai_api_key
            return bool(config.base_url or settings.openai_base_url or _filled(key))
        if config.provider == "anthropic":
            key = settings.anthropic_api_key
            return bool(config.base_url or settings.anthropic_base_url or _filled(key))
        return True

    def complete(
        self,
        messages: Sequence[ChatMessage],
        system: str,
        config: LLMConfig,
        tools: Sequence[ToolSpec] = (),
    ) -> Completion:
        """One call to the provider `config` names; its tokens are counted for GET /metrics."""
        provider = self.get(config.provider)
        if tools:
            completion = provider.complete(messages, system, config, tools)
        else:
            completion = provider.complete(messages, system, config)
        record_llm_tokens(completion.provider, sum(completion.usage.values()))
        return completion

    def close(self) -> None:
        with self._lock:
            made, self._made = list(self._made.values()), {}
        for provider in made:
            provider.close()


def _filled(secret: SecretStr | None) -> bool:
    return secret is not None and bool(secret.get_secret_value())
