"""The standard suite every registered driver must pass (Prefect's and Airflow's habit).

A new built-in driver adds an entry to EXAMPLES: params that run it against the local peer.
Drivers from entry points without an example get the static checks only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from app.drivers import driver_types, get_driver
from tests.drivers.conftest import ECHO_AGENT_ID, MakeContext
from tests.http_peer import HttpPeer
from tests.llm_peers import serve_anthropic, serve_openai

TEMPLATE_CONTEXT = {"trigger": {"score": 91}, "nodes": {}, "run": {"id": "run-1"}}


def _openai_example(peer: HttpPeer, **extra: Any) -> dict[str, Any]:
    serve_openai(peer)
    return {"prompt": "Say hi", "base_url": f"{peer.url}/v1", **extra}


def _claude_example(peer: HttpPeer) -> dict[str, Any]:
    serve_anthropic(peer)
    return {"prompt": "Say hi", "base_url": peer.url}


#: node type -> params that make it run against the peer (a path of its own per type).
EXAMPLES: dict[str, Callable[[HttpPeer], dict[str, Any]]] = {
    "conditional": lambda peer: {"condition": "trigger.score >= 80"},
    "transform": lambda peer: {"values": {"score": 91, "tier": "gold"}},
    "http_request": lambda peer: {"url": f"{peer.url}/contract/http_request"},
    "data_fetch": lambda peer: {"url": f"{peer.url}/contract/data_fetch"},
    "webhook": lambda peer: {"url": f"{peer.url}/contract/webhook", "payload": {"a": 1}},
    "mcp_llm": lambda peer: {"prompt": "Hello", "agent_id": ECHO_AGENT_ID},
    "openai": _openai_example,
    "ai_content_generation": lambda peer: _openai_example(peer, provider="openai"),
    "claude_ai": _claude_example,
    # No SMTP or Twilio configured: both go to the outbox (tested against real servers in
    # tests/drivers/test_email_send.py and test_twilio_sms.py).
    "email_send": lambda peer: {"to": "ada@example.com", "subject": "Hi", "body": "Hello"},
    "twilio_sms": lambda peer: {"to": "+14155552671", "body": "Hello"},
}

ALL_TYPES = driver_types()
SIDE_EFFECT_TYPES = [name for name in ALL_TYPES if get_driver(name).side_effects]


@pytest.fixture(params=ALL_TYPES)
def node_type(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run_example(node_type: str, peer: HttpPeer, make_ctx: MakeContext, **ctx: Any) -> Any:
    if node_type not in EXAMPLES:
        pytest.fail(f"driver {node_type} needs an entry in EXAMPLES to be run by this suite")
    driver = get_driver(node_type)
    params = driver.Params.model_validate(EXAMPLES[node_type](peer))
    return driver.run(params, make_ctx(template_context=TEMPLATE_CONTEXT, **ctx))


def test_driver_has_its_own_docstring(node_type: str) -> None:
    driver_class = type(get_driver(node_type))
    assert (driver_class.__dict__.get("__doc__") or "").strip(), driver_class


def test_type_matches_the_registry_name(node_type: str) -> None:
    assert get_driver(node_type).type == node_type


def test_params_is_a_pydantic_model_with_a_json_schema(node_type: str) -> None:
    params = get_driver(node_type).Params
    assert issubclass(params, BaseModel)
    assert params.model_json_schema()["type"] == "object"


def test_inline_drivers_have_no_side_effects(node_type: str) -> None:
    driver = get_driver(node_type)
    assert not (driver.inline and driver.side_effects)


def test_output_is_a_json_object(
    node_type: str, http_peer: HttpPeer, make_ctx: MakeContext
) -> None:
    output = run_example(node_type, http_peer, make_ctx)
    assert isinstance(output, dict)
    assert json.loads(json.dumps(output, allow_nan=False)) == output


@pytest.mark.parametrize("side_effect_type", SIDE_EFFECT_TYPES)
def test_side_effects_carry_the_same_idempotency_key_on_every_attempt(
    side_effect_type: str, http_peer: HttpPeer, make_ctx: MakeContext
) -> None:
    node_type = side_effect_type
    seen = len(http_peer.requests)
    outputs = [
        run_example(node_type, http_peer, make_ctx, run_id="run-c", node_id=node_type, attempt=n)
        for n in (1, 2)
    ]
    key = make_ctx(run_id="run-c", node_id=node_type).idempotency_key
    assert all({"backend", "id"} <= output.keys() for output in outputs)
    assert outputs[0]["id"] == outputs[1]["id"]  # the same effect, whatever the attempt
    sent = http_peer.requests[seen:]
    # Drivers that call over HTTP put the key in a header the receiver can deduplicate on.
    assert all(key in request.headers.values() for request in sent)
    if sent:
        assert len(sent) == 2
