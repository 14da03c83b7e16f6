"""The providers on the wire: what reaches the server, what comes back, how failures read."""

from __future__ import annotations

import time

import pytest

from app.errors import BlockedDestination, LLMRequestFailed, LLMUnavailable
from app.llm import ChatMessage, LLMConfig
from tests.http_peer import HttpPeer
from tests.llm.conftest import ANTHROPIC_KEY, OPENAI_KEY, MakeProviders
from tests.llm_peers import (
    ANTHROPIC_PATH,
    OPENAI_PATH,
    chat_requests,
    message_requests,
    serve_anthropic,
    serve_openai,
)

HISTORY = [
    ChatMessage("user", "My name is Ada."),
    ChatMessage("assistant", "Hello Ada."),
    ChatMessage("user", "What is my name?"),
]


def openai_config(peer: HttpPeer, **fields: object) -> LLMConfig:
    return LLMConfig.model_validate({"provider": "openai", "base_url": f"{peer.url}/v1", **fields})


def anthropic_config(peer: HttpPeer, **fields: object) -> LLMConfig:
    return LLMConfig.model_validate({"provider": "anthropic", "base_url": peer.url, **fields})


def test_openai_sends_the_system_prompt_history_and_settings(
    peer: HttpPeer, make_providers: MakeProviders
) -> None:
    config = openai_config(peer, model="gpt-test", temperature=0.2, max_tokens=50)

    completion = make_providers().complete(HISTORY, "You are terse.", config)

    [sent] = chat_requests(peer)
    assert sent["model"] == "gpt-test"
    assert sent["temperature"] == 0.2
    assert sent["max_tokens"] == 50
    assert sent["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    assert peer.requests_to(OPENAI_PATH)[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert completion.to_output() == {
        "text": "peer reply to: What is my name?",
        "model": "gpt-test",
        "provider": "openai",
        "usage": {"input_tokens": 11, "output_tokens": 7},
    }


def test_anthropic_carries_the_system_prompt_in_system(
    peer: HttpPeer, make_providers: MakeProviders
) -> None:
    config = anthropic_config(peer, model="claude-test", max_tokens=64)

    completion = make_providers().complete(HISTORY, "You are terse.", config)

    [sent] = message_requests(peer)
    assert sent["system"] == "You are terse."
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["model"] == "claude-test"
    assert sent["max_tokens"] == 64
    headers = peer.requests_to(ANTHROPIC_PATH)[0].headers
    # The key goes as x-api-key or (newer SDKs) as a bearer token.
    assert ANTHROPIC_KEY in (headers.get("x-api-key", ""), headers.get("authorization", "")[7:])
    assert completion.provider == "anthropic"
    assert completion.text == "peer reply to: What is my name?"
    assert completion.usage == {"input_tokens": 13, "output_tokens": 5}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_the_base_url_settings_point_at_any_compatible_server(
    peer: HttpPeer, make_providers: MakeProviders, provider: str
) -> None:
    providers = make_providers(
        OPENAI_BASE_URL=f"{peer.url}/v1", ANTHROPIC_BASE_URL=peer.url, DUALMCP_HTTP_ALLOWLIST=""
    )

    completion = providers.complete(HISTORY, "", LLMConfig.model_validate({"provider": provider}))

    assert completion.text == "peer reply to: What is my name?"
    assert completion.model  # the provider's default model was asked for
    assert len(peer.requests) == 1


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_429_is_retried_with_backoff(
    peer: HttpPeer, make_providers: MakeProviders, provider: str
) -> None:
    path, config = (
        (OPENAI_PATH, openai_config(peer))
        if provider == "openai"
        else (ANTHROPIC_PATH, anthropic_config(peer))
    )
    serve = serve_openai if provider == "openai" else serve_anthropic
    serve(peer, fail_times=1, fail_status=429)

    completion = make_providers().complete(HISTORY, "", config)

    assert completion.text == "peer reply to: What is my name?"
    assert len(peer.requests_to(path)) == 2


def test_a_provider_failing_every_attempt_is_retryable_and_says_so(
    peer: HttpPeer, make_providers: MakeProviders
) -> None:
    serve_openai(peer, fail_times=100, fail_status=503)
    started = time.monotonic()

    with pytest.raises(LLMUnavailable) as caught:
        make_providers().complete(HISTORY, "", openai_config(peer))

    assert str(caught.value).startswith("openai: HTTP 503")
    assert "after 2 retries" in str(caught.value)
    assert len(peer.requests_to(OPENAI_PATH)) == 3
    assert time.monotonic() - started >= 0.5  # backed off between attempts


def test_a_refused_request_is_permanent_and_never_shows_the_key(
    peer: HttpPeer, make_providers: MakeProviders
) -> None:
    peer.reply(
        OPENAI_PATH,
        status=401,
        json={"error": {"message": f"Incorrect API key provided: {OPENAI_KEY}"}},
    )

    with pytest.raises(LLMRequestFailed) as caught:
        make_providers().complete(HISTORY, "", openai_config(peer))

    assert str(caught.value).startswith("openai: HTTP 401: Incorrect API key provided")
    assert OPENAI_KEY not in str(caught.value)
    assert len(peer.requests_to(OPENAI_PATH)) == 1  # a 401 is not retried


def test_a_timeout_is_retryable(peer: HttpPeer, make_providers: MakeProviders) -> None:
    serve_openai(peer, delay_s=2)
    providers = make_providers(DUALMCP_LLM_TIMEOUT_S=0.3, DUALMCP_LLM_MAX_RETRIES=0)

    with pytest.raises(LLMUnavailable, match="openai: the request timed out"):
        providers.complete(HISTORY, "", openai_config(peer))


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_base_url_from_a_config_goes_through_the_ssrf_guard(
    peer: HttpPeer, make_providers: MakeProviders, provider: str
) -> None:
    providers = make_providers(DUALMCP_HTTP_ALLOWLIST="")
    config = openai_config(peer) if provider == "openai" else anthropic_config(peer)

    with pytest.raises(BlockedDestination, match="loopback"):
        providers.complete(HISTORY, "", config)

    assert peer.requests == []


def test_openai_without_a_key_or_server_says_what_is_missing(
    make_providers: MakeProviders,
) -> None:
    providers = make_providers(OPENAI_API_KEY="")

    with pytest.raises(LLMRequestFailed, match="OPENAI_API_KEY is not set"):
        providers.complete(HISTORY, "", LLMConfig(provider="openai"))


def test_echo_is_offline_deterministic_and_says_what_it_is(
    make_providers: MakeProviders,
) -> None:
    providers = make_providers()

    first = providers.complete(HISTORY, "system", LLMConfig(provider="echo"))
    second = providers.complete(HISTORY, "system", LLMConfig(provider="echo"))

    assert first == second
    assert first.provider == "echo"
    assert first.text == "[echo provider, no LLM called] What is my name?"


def test_configured_tells_whether_a_provider_can_be_reached(
    make_providers: MakeProviders,
) -> None:
    keyless = make_providers(OPENAI_API_KEY="", ANTHROPIC_API_KEY="")

    assert keyless.configured(LLMConfig(provider="echo"))
    assert not keyless.configured(LLMConfig(provider="openai"))
    assert not keyless.configured(LLMConfig(provider="anthropic"))
    assert keyless.configured(LLMConfig(provider="openai", base_url="http://127.0.0.1:1/v1"))
