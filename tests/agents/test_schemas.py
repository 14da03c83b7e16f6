"""The agent config models: defaults, limits, and one clear message per bad field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.agents import DEFAULT_MODELS, LLMConfig, PersonalityTraits
from app.agents.schemas import slugify
from app.agents.store import new_agent_id


@pytest.mark.parametrize("provider", ["openai", "anthropic", "echo"])
def test_each_provider_has_a_default_model(provider: str) -> None:
    assert LLMConfig.model_validate({"provider": provider}).model == DEFAULT_MODELS[provider]


def test_a_named_model_is_kept() -> None:
    assert LLMConfig.model_validate({"provider": "openai", "model": "gpt-4o"}).model == "gpt-4o"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/v1", "https://api.example.com"])
def test_an_http_base_url_is_accepted(url: str) -> None:
    assert LLMConfig.model_validate({"base_url": url}).base_url == url


@pytest.mark.parametrize("url", ["ftp://example.com", "https://", "example.com"])
def test_a_base_url_must_be_http_with_a_host(url: str) -> None:
    with pytest.raises(ValidationError):
        LLMConfig.model_validate({"base_url": url})


def test_extra_personality_entries_are_kept() -> None:
    traits = PersonalityTraits.model_validate({"tone": "dry", "languages": ["en", "fr"], "age": 3})

    assert traits.model_dump(exclude_defaults=True) == {
        "tone": "dry",
        "languages": ["en", "fr"],
        "age": 3,
    }


def test_a_bad_extra_entry_is_one_problem() -> None:
    with pytest.raises(ValidationError) as caught:
        PersonalityTraits.model_validate({"nested": [1, 2]})

    assert [error["loc"] for error in caught.value.errors()] == [("nested",)]


@pytest.mark.parametrize(
    ("name", "slug"),
    [("Sales Assistant!", "sales-assistant"), ("  ", ""), ("Émile Zola", "emile-zola")],
)
def test_slugify_keeps_only_url_safe_characters(name: str, slug: str) -> None:
    assert slugify(name) == slug


def test_a_nameless_agent_still_gets_an_id() -> None:
    assert new_agent_id("!!!").startswith("agent-")
