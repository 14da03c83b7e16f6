"""Native tool calling on the wire: tools offered, calls read, calls and results in history."""

from __future__ import annotations

import json

import pytest

from app.llm import ChatMessage, LLMConfig, ToolCall, ToolSpec
from app.llm.base import RAW_ARGUMENTS
from app.llm.echo import PREFIX
from tests.http_peer import HttpPeer
from tests.llm.conftest import MakeProviders
from tests.llm_peers import (
    chat_requests,
    message_requests,
    serve_anthropic_tools,
    serve_openai_tools,
)

SCORE_SCHEMA = {
    "type": "object",
    "properties": {"email": {"type": "string"}},
    "required": ["email"],
}
TOOLS = [
    ToolSpec("score_lead", "Score a sales lead.", SCORE_SCHEMA),
    ToolSpec("lookup", "Look a company up.", {"type": "object", "properties": {}}),
]
PROMPT = ChatMessage(
    "user", 'Score it.\n/call score_lead {"email": "ada@example.com"}\n/call lookup'
)
CALLS = (
    ToolCall("c1", "score_lead", {"email": "ada@example.com"}),
    ToolCall("c2", "lookup", {}),
)
#: A turn after the calls ran: one result, one failure.
AFTER_CALLS = [
    PROMPT,
    ChatMessage("assistant", "", tool_calls=CALLS),
    ChatMessage("tool", '{"score": 87}', tool_call_id="c1"),
    ChatMessage("tool", "lookup timed out", tool_call_id="c2", is_error=True),
]


def openai_config(peer: HttpPeer) -> LLMConfig:
    return LLMConfig.model_validate({"provider": "openai", "base_url": f"{peer.url}/v1"})


def anthropic_config(peer: HttpPeer) -> LLMConfig:
    return LLMConfig.model_validate({"provider": "anthropic", "base_url": peer.url})


def echo_config() -> LLMConfig:
    return LLMConfig(provider="echo")


# OpenAI Chat Completions


def test_openai_offers_tools_as_functions(peer: HttpPeer, make_providers: MakeProviders) -> None:
    serve_openai_tools(peer)

    make_providers().complete([PROMPT], "", openai_config(peer), TOOLS)

    [sent] = chat_requests(peer)
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "score_lead",
                "description": "Score a sales lead.",
                "parameters": SCORE_SCHEMA,
            },
        },
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look a company up.",
                "parameters": {"type": "object", "properties": {}},
            },
        },
    ]


def test_openai_reads_every_call_of_an_answer(
    peer: HttpPeer, make_providers: MakeProviders
) -> None:
    serve_openai_tools(peer)

    completion = make_providers().complete([PROMPT], "", openai_config(peer), TOOLS)

    assert completion.tool_calls == (
        ToolCall("call_1_1", "score_lead", {"email": "ada@example.com"}),
        ToolCall("call_1_2", "lookup", {}),
    )
    assert completion.text == ""
    assert completion.usage == {"input_tokens": 11, "output_tokens": 7}


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", '"text"'])
def test_openai_arguments_that_are_not_an_object_are_kept_raw(
    peer: HttpPeer, make_providers: MakeProviders, arguments: str
) -> None:
    serve_openai_tools(peer)

    completion = make_providers().complete(
        [ChatMessage("user", f"/call lookup {arguments}")], "", openai_config(peer), TOOLS
    )

    assert completion.tool_calls[0].arguments == {RAW_ARGUMENTS: arguments}


def test_openai_writes_calls_and_results_in_its_wire_format(
    peer: HttpPeer, make_providers: MakeProviders
) -> None:
    serve_openai_tools(peer)

    completion = make_providers().complete(AFTER_CALLS, "Be brief.", openai_config(peer), TOOLS)

    [sent] = chat_requests(peer)
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": PROMPT.content},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {
                        "name": "score_lead",
                        "arguments": json.dumps({"email": "ada@example.com"}),
                    },
                },
                {"id": "c2", "type": "function", "function": {"name": "lookup", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"score": 87}'},
        # Chat Completions has no error flag: the content says so.
        {"role": "tool", "tool_call_id": "c2", "content": "Error: lookup timed out"},
    ]
    assert completion.tool_calls == ()
    expected = 'tool results: score_lead: {"score": 87}; lookup: Error: lookup timed out'
    assert completion.text == expected


def test_openai_keeps_the_text_that_came_with_calls(
    peer: HttpPeer, make_providers: MakeProviders
) -> None:
    serve_openai_tools(peer)
    history = [PROMPT, ChatMessage("assistant", "Let me check.", tool_calls=CALLS[:1])]

    make_providers().complete(history, "", openai_config(peer), TOOLS)

    assert chat_requests(peer)[0]["messages"][1]["content"] == "Let me check."


# Anthropic Messages


def test_anthropic_offers_tools_with_their_input_schema(
    peer: HttpPeer, make_providers: MakeProviders
) -> None:
    serve_anthropic_tools(peer)

    make_providers().complete([PROMPT], "", anthropic_config(peer), TOOLS)

    [sent] = message_requests(peer)
    assert sent["tools"] == [
        {"name": "score_lead", "description": "Score a sales lead.", "input_schema": SCORE_SCHEMA},
        {
            "name": "lookup",
            "description": "Look a company up.",
            "input_schema": {"type": "object", "properties": {}},
        },
    ]


def test_anthropic_reads_tool_use_blocks_and_the_text_beside_them(
    peer: HttpPeer, make_providers: MakeProviders
) -> None:
    serve_anthropic_tools(peer)

    completion = make_providers().complete([PROMPT], "", anthropic_config(peer), TOOLS)

    assert completion.tool_calls == (
        ToolCall("toolu_1_1", "score_lead", {"email": "ada@example.com"}),
        ToolCall("toolu_1_2", "lookup", {}),
    )
    assert completion.text == "calling score_lead, lookup"


def test_anthropic_merges_the_results_of_one_turn_into_one_user_message(
    peer: HttpPeer, make_providers: MakeProviders
) -> None:
    serve_anthropic_tools(peer)

    completion = make_providers().complete(AFTER_CALLS, "", anthropic_config(peer), TOOLS)

    [sent] = message_requests(peer)
    assert sent["messages"] == [
        {"role": "user", "content": PROMPT.content},
        {
            "role": "assistant",
            "content": [  # no empty text block: the API refuses one
                {
                    "type": "tool_use",
                    "id": "c1",
                    "name": "score_lead",
                    "input": {"email": "ada@example.com"},
                },
                {"type": "tool_use", "id": "c2", "name": "lookup", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "c1",
                    "is_error": False,
                    "content": '{"score": 87}',
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "c2",
                    "is_error": True,
                    "content": "lookup timed out",
                },
            ],
        },
    ]
    expected = 'tool results: score_lead: {"score": 87}; lookup (error): lookup timed out'
    assert completion.text == expected


def test_anthropic_puts_a_users_text_after_results_in_their_message(
    peer: HttpPeer, make_providers: MakeProviders
) -> None:
    serve_anthropic_tools(peer)
    history = [*AFTER_CALLS[:3], ChatMessage("user", "And now?")]
    history[1] = ChatMessage("assistant", "Checking.", tool_calls=CALLS[:1])

    completion = make_providers().complete(history, "", anthropic_config(peer), TOOLS)

    [sent] = message_requests(peer)
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][1]["content"][0] == {"type": "text", "text": "Checking."}
    assert [block["type"] for block in sent["messages"][2]["content"]] == ["tool_result", "text"]
    assert sent["messages"][2]["content"][1] == {"type": "text", "text": "And now?"}
    assert completion.text == "peer reply to: And now?"


def test_anthropic_an_empty_result_is_sent_without_content(
    peer: HttpPeer, make_providers: MakeProviders
) -> None:
    serve_anthropic_tools(peer)
    history = [*AFTER_CALLS[:2], ChatMessage("tool", "", tool_call_id="c1")]

    make_providers().complete(history, "", anthropic_config(peer), TOOLS)

    [result] = message_requests(peer)[0]["messages"][2]["content"]
    assert result == {"type": "tool_result", "tool_use_id": "c1", "is_error": False}


# Both providers


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_call_fed_back_with_its_result_gets_an_answer(
    peer: HttpPeer, make_providers: MakeProviders, provider: str
) -> None:
    """What the tool loop does: the model's own calls, then their results, in the next call."""
    serve_openai_tools(peer)
    serve_anthropic_tools(peer)
    config = openai_config(peer) if provider == "openai" else anthropic_config(peer)
    providers = make_providers()

    first = providers.complete([PROMPT], "", config, TOOLS)
    history = [
        PROMPT,
        ChatMessage("assistant", first.text, tool_calls=first.tool_calls),
        *(ChatMessage("tool", f"result of {c.name}", tool_call_id=c.id) for c in first.tool_calls),
    ]
    second = providers.complete(history, "", config, TOOLS)

    assert [call.name for call in first.tool_calls] == ["score_lead", "lookup"]
    assert second.tool_calls == ()
    assert second.text == "tool results: score_lead: result of score_lead; lookup: result of lookup"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_peer_with_rounds_keeps_calling_after_results(
    peer: HttpPeer, make_providers: MakeProviders, provider: str
) -> None:
    serve_openai_tools(peer, rounds=3)
    serve_anthropic_tools(peer, rounds=3)
    config = openai_config(peer) if provider == "openai" else anthropic_config(peer)
    providers = make_providers()
    history = [ChatMessage("user", "/call lookup")]

    ids = []
    for _ in range(3):
        completion = providers.complete(history, "", config, TOOLS)
        [call] = completion.tool_calls
        ids.append(call.id)
        history += [
            ChatMessage("assistant", completion.text, tool_calls=completion.tool_calls),
            ChatMessage("tool", "ok", tool_call_id=call.id),
        ]
    last = providers.complete(history, "", config, TOOLS)

    assert len(set(ids)) == 3  # unique within the conversation
    assert last.tool_calls == ()
    assert last.text == "tool results: lookup: ok"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_call_without_tools_sends_no_tools_key(
    peer: HttpPeer, make_providers: MakeProviders, provider: str
) -> None:
    config = openai_config(peer) if provider == "openai" else anthropic_config(peer)

    completion = make_providers().complete([ChatMessage("user", "hi")], "", config)

    [request] = peer.requests
    assert "tools" not in request.json
    assert completion.tool_calls == ()
    assert completion.text == "peer reply to: hi"


# echo


def test_echo_calls_an_offered_tool_from_a_call_line(make_providers: MakeProviders) -> None:
    message = ChatMessage("user", '/call score_lead {"email": "ada@example.com"}')

    completion = make_providers().complete([message], "", echo_config(), TOOLS)

    assert completion.tool_calls == (
        ToolCall("echo-call-1-1", "score_lead", {"email": "ada@example.com"}),
    )
    assert completion.text == ""


def test_echo_makes_one_call_per_call_line(make_providers: MakeProviders) -> None:
    history = [ChatMessage("user", "hi"), ChatMessage("assistant", "hello"), PROMPT]

    completion = make_providers().complete(history, "", echo_config(), TOOLS)

    assert completion.tool_calls == (
        ToolCall("echo-call-3-1", "score_lead", {"email": "ada@example.com"}),
        ToolCall("echo-call-3-2", "lookup", {}),
    )


def test_echo_answers_with_the_results_it_is_given(make_providers: MakeProviders) -> None:
    completion = make_providers().complete(AFTER_CALLS, "", echo_config(), TOOLS)

    assert completion.tool_calls == ()
    assert completion.text == (
        f'{PREFIX} score_lead: {{"score": 87}}\nlookup (error): lookup timed out'
    )


def test_echo_names_an_unknown_tool_instead_of_calling_it(
    make_providers: MakeProviders,
) -> None:
    message = ChatMessage("user", "/call delete_everything {}")

    completion = make_providers().complete([message], "", echo_config(), TOOLS)

    assert completion.tool_calls == ()
    assert completion.text == (
        f"{PREFIX} /call delete_everything {{}}\n"
        "unknown tool 'delete_everything' (offered: lookup, score_lead)"
    )


def test_echo_refuses_arguments_that_are_not_an_object(make_providers: MakeProviders) -> None:
    message = ChatMessage("user", "/call lookup [1, 2]")

    completion = make_providers().complete([message], "", echo_config(), TOOLS)

    assert completion.tool_calls == ()
    assert "the arguments of 'lookup' are not a JSON object: [1, 2]" in completion.text


def test_echo_without_tools_treats_a_call_as_unknown(make_providers: MakeProviders) -> None:
    completion = make_providers().complete([PROMPT], "", echo_config())

    assert completion.tool_calls == ()
    assert "unknown tool 'score_lead' (offered: none)" in completion.text


def test_echo_is_deterministic_with_tools(make_providers: MakeProviders) -> None:
    providers = make_providers()

    first = providers.complete([PROMPT], "", echo_config(), TOOLS)
    second = providers.complete([PROMPT], "", echo_config(), TOOLS)

    assert first == second
    assert first.usage["output_tokens"] > 0
