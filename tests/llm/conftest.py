"""Providers against real local servers speaking the OpenAI and Anthropic wire formats."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from app.config import Settings
from app.llm import LLMProviders
from app.safe_http import make_http_client
from tests.http_peer import HttpPeer
from tests.llm_peers import serve_anthropic, serve_openai

OPENAI_KEY = "sk-test-openai-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef"

MakeProviders = Callable[..., LLMProviders]


@pytest.fixture
def peer() -> Iterator[HttpPeer]:
    with HttpPeer() as peer:
        serve_openai(peer)
        serve_anthropic(peer)
        yield peer


@pytest.fixture
def make_providers() -> Iterator[MakeProviders]:
    """LLMProviders for settings given as keyword arguments (keys set, loopback allowed)."""
    made: list[tuple[LLMProviders, httpx.Client]] = []

    def make(**overrides: object) -> LLMProviders:
        fields: dict[str, object] = {
            "DUALMCP_HTTP_ALLOWLIST": "127.0.0.1",
            "OPENAI_API_KEY": OPENAI_KEY,
            "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
            "DUALMCP_LLM_MAX_RETRIES": 2,
            "DUALMCP_LLM_TIMEOUT_S": 5,
        }
        settings = Settings(**{**fields, **overrides})
        http = make_http_client(settings)
        providers = LLMProviders(settings, http)
        made.append((providers, http))
        return providers

    yield make
    for providers, http in made:
        providers.close()
        http.close()
