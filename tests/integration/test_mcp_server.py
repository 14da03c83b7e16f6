"""/mcp through the front door: gunicorn, a real worker, PostgreSQL and Redis, driven by the
official SDK client in both protocol generations, with stored read and invoke keys."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import mcp_types as types
import pytest
from sqlalchemy import func, select

from app import apikeys
from app.models import WorkflowRun
from tests.http_peer import HttpPeer
from tests.integration.conftest import ADMIN_KEY, Stack, gunicorn
from tests.mcp_clients import call_tool, result_texts, tool_names

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
MODES = ["auto", "legacy"]


@pytest.fixture(scope="module")
def keys(stack: Stack) -> dict[str, str]:
    """A stored key of each scope below admin (admin's comes from DUALMCP_API_KEYS)."""
    with stack.sessions.begin() as session:
        read = apikeys.create_key(session, "read", "mcp tests")
        invoke = apikeys.create_key(session, "invoke", "mcp tests")
    return {"read": read, "invoke": invoke, "admin": ADMIN_KEY}


@pytest.fixture(scope="module")
def mcp_url(web_url: str) -> str:
    return f"{web_url}/mcp"


@pytest.fixture(scope="module")
def greet(web_url: str) -> str:
    """A tool workflow that greets `arguments.name`; its tool name."""
    return create_workflow(web_url, greeting_workflow(unique("greet")))


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def greeting_workflow(tool_name: str) -> dict[str, Any]:
    return {
        "workflow_id": tool_name.replace("_", "-"),
        "tool": {
            "name": tool_name,
            "description": "Greets someone by name.",
            "input_schema": {
                "type": "object",
                "properties": {"name": {"type": "string", "minLength": 1}},
                "required": ["name"],
            },
        },
        "nodes": [
            {
                "id": "greet",
                "type": "transform",
                "params": {"values": {"greeting": "hello {{ trigger.name }}"}},
            }
        ],
    }


def fetching_workflow(tool_name: str, url: str) -> dict[str, Any]:
    """A tool workflow whose one node GETs `url` (an error status fails the run)."""
    return {
        "workflow_id": tool_name.replace("_", "-"),
        "tool": {"name": tool_name, "description": "Fetches a page."},
        "nodes": [{"id": "fetch", "type": "http_request", "params": {"url": url}}],
    }


def create_workflow(web_url: str, definition: dict[str, Any]) -> str:
    answer = httpx.post(f"{web_url}/api/workflows", json=definition, headers=ADMIN, timeout=10)
    assert answer.status_code == 201, answer.text
    return str(definition["tool"]["name"])


def call(
    url: str, key: str, name: str, arguments: dict[str, Any], mode: str = "auto"
) -> types.CallToolResult:
    return call_tool(url, key, name, arguments, mode)


def text(result: types.CallToolResult) -> str:
    return "\n".join(result_texts(result))


def structured(result: types.CallToolResult) -> dict[str, Any]:
    assert result.structured_content is not None, text(result)
    return dict(result.structured_content)


def count_runs(stack: Stack, workflow_id: str) -> int:
    with stack.sessions() as session:
        counted = session.scalar(
            select(func.count())
            .select_from(WorkflowRun)
            .where(WorkflowRun.workflow_id == workflow_id)
        )
    return int(counted or 0)


@pytest.mark.parametrize("mode", MODES)
def test_the_sdk_client_lists_and_calls_a_workflow_tool_run_by_the_worker(
    stack: Stack, web_url: str, mcp_url: str, keys: dict[str, str], greet: str, mode: str
) -> None:
    listed = tool_names(mcp_url, keys["invoke"], mode)
    result = call(mcp_url, keys["invoke"], greet, {"name": "Ada"}, mode)

    shaped = structured(result)
    run = httpx.get(f"{web_url}/api/runs/{shaped['run_id']}", headers=ADMIN, timeout=10).json()
    assert {"get_run", greet} <= set(listed)
    assert result.is_error is False
    assert shaped == {
        "run_id": shaped["run_id"],
        "status": "succeeded",
        "output": {"greet": {"greeting": "hello Ada"}},
    }
    assert (run["status"], run["source"]) == ("succeeded", "mcp")


@pytest.mark.parametrize("mode", MODES)
def test_bad_arguments_are_a_tool_error_naming_the_field_and_start_no_run(
    stack: Stack, mcp_url: str, keys: dict[str, str], greet: str, mode: str
) -> None:
    before = count_runs(stack, greet.replace("_", "-"))

    result = call(mcp_url, keys["invoke"], greet, {"name": ""}, mode)

    assert result.is_error is True
    assert "arguments.name: must be at least 1 characters long" in text(result)
    assert count_runs(stack, greet.replace("_", "-")) == before


def test_a_run_that_fails_is_a_tool_error_with_the_runs_error(
    stack: Stack, web_url: str, mcp_url: str, keys: dict[str, str], http_peer: HttpPeer
) -> None:
    http_peer.reply("/mcp-tests/missing", status=404, json={"error": "gone"})
    tool = create_workflow(
        web_url, fetching_workflow(unique("fetch"), f"{http_peer.url}/mcp-tests/missing")
    )

    result = call(mcp_url, keys["invoke"], tool, {})

    shaped = structured(result)
    assert result.is_error is True
    assert shaped["status"] == "failed"
    assert "404" in shaped["error"]


def test_a_paused_workflow_leaves_the_list_and_a_new_one_joins_it_without_restart(
    web_url: str, mcp_url: str, keys: dict[str, str]
) -> None:
    old = create_workflow(web_url, greeting_workflow(unique("old")))
    assert old in tool_names(mcp_url, keys["read"])

    paused = httpx.patch(
        f"{web_url}/api/workflows/{old.replace('_', '-')}/status",
        json={"status": "paused"},
        headers=ADMIN,
        timeout=10,
    )
    new = create_workflow(web_url, greeting_workflow(unique("new")))
    # Two gunicorn workers: each list may be served by either; both read the database.
    lists = [tool_names(mcp_url, keys["read"], mode) for mode in MODES * 2]
    refused = call(mcp_url, keys["invoke"], old, {"name": "Ada"})

    assert paused.status_code == 200, paused.text
    assert all(old not in names and new in names for names in lists), lists
    assert refused.is_error is True


def test_a_read_key_lists_but_may_not_call(
    stack: Stack, mcp_url: str, keys: dict[str, str], greet: str
) -> None:
    before = count_runs(stack, greet.replace("_", "-"))

    listed = tool_names(mcp_url, keys["read"])
    refused = call(mcp_url, keys["read"], greet, {"name": "Ada"})

    assert greet in listed
    assert refused.is_error is True
    assert text(refused) == "this key has the read scope; calling tools needs invoke"
    assert count_runs(stack, greet.replace("_", "-")) == before


@pytest.mark.parametrize("scope", ["invoke", "admin"])
def test_invoke_and_admin_keys_may_call(
    mcp_url: str, keys: dict[str, str], greet: str, scope: str
) -> None:
    result = call(mcp_url, keys[scope], greet, {"name": scope})

    assert result.is_error is False
    assert structured(result)["output"] == {"greet": {"greeting": f"hello {scope}"}}


def test_no_key_is_a_401_naming_bearer_without_oauth_metadata(mcp_url: str) -> None:
    answer = httpx.post(mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert answer.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_get_and_delete_are_405(mcp_url: str, method: str) -> None:
    answer = httpx.request(method, mcp_url, headers=ADMIN, timeout=10)

    assert answer.status_code == 405
    assert answer.headers["Allow"] == "POST"


def test_a_foreign_origin_is_a_403(mcp_url: str) -> None:
    headers = {**ADMIN, "Origin": "https://evil.example", "Accept": "application/json"}
    answer = httpx.post(mcp_url, json={}, headers=headers, timeout=10)

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "forbidden_origin"


def test_an_exposed_agent_answers_through_a_worker(
    web_url: str, mcp_url: str, keys: dict[str, str]
) -> None:
    agent_id = f"helper-{uuid.uuid4().hex[:8]}"
    body = {"agent_id": agent_id, "agent_name": "Helper", "expose_as_tool": True}
    created = httpx.post(f"{web_url}/api/agents", json=body, headers=ADMIN, timeout=10)
    assert created.status_code == 201, created.text

    first = call(mcp_url, keys["invoke"], f"ask_{agent_id}", {"message": "hello there"})
    session_id = structured(first)["session_id"]
    second = call(
        mcp_url, keys["invoke"], f"ask_{agent_id}", {"message": "again", "session_id": session_id}
    )

    assert first.is_error is False and second.is_error is False
    assert "hello there" in structured(first)["reply"]  # the offline echo provider
    assert structured(second)["session_id"] == session_id
    memory = httpx.get(
        f"{web_url}/api/agents/{agent_id}/memory",
        params={"session_id": session_id},
        headers=ADMIN,
        timeout=10,
    ).json()
    assert [message["role"] for message in memory["messages"]] == ["user", "assistant"] * 2


@pytest.fixture(scope="module")
def impatient_mcp_url(stack: Stack) -> Iterator[str]:
    """A second front end that waits 1 s for a tool's run."""
    with gunicorn(stack, {"DUALMCP_MCP_WAIT_S": "1"}) as url:
        yield f"{url}/mcp"


def test_a_call_outliving_its_wait_answers_the_run_id_and_get_run_gives_the_output_later(
    web_url: str, impatient_mcp_url: str, keys: dict[str, str], http_peer: HttpPeer
) -> None:
    http_peer.reply("/mcp-tests/slow", json={"ok": True}, delay_s=5)
    tool = create_workflow(
        web_url, fetching_workflow(unique("slow"), f"{http_peer.url}/mcp-tests/slow")
    )

    began = time.monotonic()
    pending = call(impatient_mcp_url, keys["invoke"], tool, {})
    waited = time.monotonic() - began
    run_id = structured(pending)["run_id"]
    deadline = time.monotonic() + 30
    later = call(impatient_mcp_url, keys["invoke"], "get_run", {"run_id": run_id})
    while structured(later)["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
        later = call(impatient_mcp_url, keys["invoke"], "get_run", {"run_id": run_id})

    assert pending.is_error is False
    assert structured(pending) == {"run_id": run_id, "status": structured(pending)["status"]}
    assert structured(pending)["status"] in ("queued", "running")
    assert f'call get_run with {{"run_id": "{run_id}"}}' in text(pending)
    assert waited < 3.5, "the front end waited well past DUALMCP_MCP_WAIT_S"
    assert structured(later)["status"] == "succeeded"
    assert structured(later)["output"]["fetch"]["json"] == {"ok": True}
