"""Personality -> system prompt: deterministic, every trait stated."""

from __future__ import annotations

from app.agents.prompt import build_system_prompt


def test_named_traits_come_first_in_a_fixed_order() -> None:
    prompt = build_system_prompt(
        "Sales assistant",
        {
            "instructions": "Never promise discounts.",
            "traits": ["curious", "brief"],
            "style": "short sentences",
            "tone": "friendly",
            "role": "a sales assistant for Example Corp",
        },
    )

    assert prompt.splitlines() == [
        "You are Sales assistant, a sales assistant for Example Corp.",
        "Tone: friendly.",
        "Style: short sentences.",
        "Traits: curious, brief.",
        "Never promise discounts.",
    ]


def test_free_entries_are_stated_in_the_order_written() -> None:
    prompt = build_system_prompt(
        "Helper", {"favourite_colour": "green", "emoji": False, "languages": ["en", "fr"]}
    )

    assert prompt.splitlines()[1:] == [
        "Favourite colour: green.",
        "Emoji: no.",
        "Languages: en, fr.",
    ]


def test_no_traits_still_names_the_agent() -> None:
    assert build_system_prompt("Plain", {}) == "You are Plain."


def test_the_rolling_summary_follows_the_personality() -> None:
    prompt = build_system_prompt("Helper", {"tone": "calm"}, summary="- user: hi | assistant: yo")

    assert prompt.endswith(
        "Summary of the earlier conversation (oldest first):\n- user: hi | assistant: yo"
    )
