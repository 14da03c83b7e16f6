"""The bad-input suite through the front door (issue 13, section 1): gunicorn with the
production settings module, PostgreSQL, Redis and a worker. Every request is answered with its
4xx in the JSON error format, nothing is written, and the web log holds no traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from app.demo import new_webhook_secret, signed_headers
from app.models import AgentMCP, TriggerEvent, Workflow, WorkflowRun
from tests.integration.conftest import ADMIN_KEY, Stack, gunicorn
from tests.web.factories import unique_id

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
JSON = {**ADMIN, "Content-Type": "application/json"}
LIMIT = 64 * 1024


class Web:
    """gunicorn under test: its URL, its log, and the workflow the webhooks go to."""

    def __init__(self, url: str, log: Path, workflow_id: str, secret: str) -> None:
        self.url, self.log = url, log
        self.workflow_id, self.secret = workflow_id, secret
        self.client = httpx.Client(base_url=url, timeout=10)

    def webhook(self, body: str, workflow_id: str | None = None) -> httpx.Response:
        path = f"/api/triggers/webhook/{workflow_id or self.workflow_id}"
        return self.client.post(path, content=body, headers=signed_headers(self.secret, body))

    def execute(self, input_json: str) -> httpx.Response:
        body = f'{{"workflow_id": "{self.workflow_id}", "input": {input_json}}}'
        return self.client.post("/api/workflow/execute", content=body, headers=JSON)


@pytest.fixture(scope="module")
def web(stack: Stack) -> Iterator[Web]:
    with gunicorn(stack, {"DUALMCP_MAX_BODY_BYTES": str(LIMIT)}) as url:
        log = stack.logs / f"gunicorn-{urlsplit(url).port}.log"
        secret = new_webhook_secret()
        workflow_id = unique_id("bad-input")
        definition = {
            "workflow_id": workflow_id,
            "trigger": {"type": "webhook", "secrets": [secret]},
            "nodes": [{"id": "shape", "type": "transform", "params": {"values": {"ok": True}}}],
        }
        created = httpx.post(f"{url}/api/workflows", json=definition, headers=ADMIN, timeout=10)
        assert created.status_code == 201, created.text
        web = Web(url, log, workflow_id, secret)
        yield web
        web.client.close()


def assert_error(answer: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"] == "application/json", answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert set(error) == {"code", "message", "details"}
    if code is not None:
        assert error["code"] == code, error
    return error


def assert_no_traceback(web: Web) -> None:
    log = web.log.read_text(errors="replace")
    assert "Traceback" not in log, log
    assert "unhandled error" not in log, log


def chunks(body: bytes, size: int = 8192) -> Iterator[bytes]:
    """A body httpx sends with `Transfer-Encoding: chunked` (no Content-Length)."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def padded_agent(size: int, name: str) -> bytes:
    """A valid agent padded with spaces to exactly `size` bytes."""
    start, end = f'{{"agent_name": "{name}"'.encode(), b"}"
    return start + b" " * (size - len(start) - len(end)) + end


def test_every_bad_input_is_a_json_4xx_and_writes_nothing(stack: Stack, web: Web) -> None:
    client, name = web.client, unique_id("bad-agent")
    bad_workflow = unique_id("bad-workflow")

    # Text PostgreSQL cannot store, in paths, queries and bodies
    for path in ("/api/workflows/a%00b", "/api/agents/a%00b", "/api/workflows/a%00b/versions"):
        assert_error(client.get(path, headers=ADMIN), 404, "not_found")
    assert_error(client.delete("/api/agents/a%00b", headers=ADMIN), 404, "not_found")
    assert_error(client.get("/api/runs?workflow_id=a%00b", headers=ADMIN), 422, "invalid_text")
    assert_error(web.webhook('{"v": 1}', workflow_id="a%00b"), 404, "not_found")
    for text in (r"a\u0000b", r"\ud800"):
        error = assert_error(web.webhook(f'{{"v": "{text}"}}'), 422, "invalid_text")
        assert [p["path"] for p in error["details"]["problems"]] == ["v"]
        error = assert_error(web.execute(f'{{"v": "{text}"}}'), 422, "invalid_text")
        assert [p["path"] for p in error["details"]["problems"]] == ["input.v"]
    agent = f'{{"agent_name": "{name}\\u0000"}}'
    assert_error(client.post("/api/agents", content=agent, headers=JSON), 422, "invalid_text")
    definition = {"workflow_id": bad_workflow, "name": "a\x00b", "nodes": []}
    answer = client.post("/api/workflows", content=json.dumps(definition), headers=JSON)
    assert_error(answer, 422, "invalid_text")
    answer = client.put("/api/workflows/a%00b", content=json.dumps({"nodes": []}), headers=JSON)
    assert_error(answer, 422, "invalid_text")

    # Not JSON: NaN, Infinity, overflowing numbers, too deep, not UTF-8
    for number in ("NaN", "Infinity", "-Infinity", "1e999"):
        error = assert_error(web.execute(f'{{"v": {number}}}'), 400, "malformed_json")
        assert error["message"].startswith(f"{number} at input.v ")
        assert_error(web.webhook(f'{{"v": {number}}}'), 400, "malformed_json")
    nan_node = '{"id": "x", "type": "transform", "params": {"values": {"x": NaN}}}'
    nan_definition = f'{{"workflow_id": "{bad_workflow}", "nodes": [{nan_node}]}}'
    answer = client.post("/api/workflows", content=nan_definition, headers=JSON)
    assert_error(answer, 400, "malformed_json")
    deep = "[" * 33 + "]" * 33
    assert_error(client.post("/api/agents", content=deep, headers=JSON), 400, "malformed_json")
    not_deep = "[" * 32 + "]" * 32
    answer = client.post("/api/agents", content=not_deep, headers=JSON)
    assert_error(answer, 422, "validation_failed")
    latin1 = f'{{"agent_name": "{name}\xe9"}}'.encode("latin-1")
    assert_error(client.post("/api/agents", content=latin1, headers=JSON), 400, "malformed_json")

    # A chunked body past the limit is a 413, not its first LIMIT bytes
    cut_here = padded_agent(LIMIT, name) + b"  "
    answer = client.post("/api/agents", content=chunks(cut_here), headers=JSON)
    assert_error(answer, 413)
    body = '{"v": "' + "x" * LIMIT + '"}'
    path = f"/api/triggers/webhook/{web.workflow_id}"
    headers = signed_headers(web.secret, body)
    answer = client.post(path, content=chunks(body.encode()), headers=headers)
    assert_error(answer, 413)

    # Nothing was written by any of them
    with stack.sessions() as session:
        runs = select(func.count()).where(WorkflowRun.workflow_id == web.workflow_id)
        events = select(func.count()).where(TriggerEvent.workflow_id == web.workflow_id)
        agents = select(func.count()).where(AgentMCP.agent_name.startswith(name))
        assert (session.scalar(runs), session.scalar(events), session.scalar(agents)) == (0, 0, 0)
        assert session.get(Workflow, bad_workflow) is None

    # ... while the same doors take good input, chunked included
    assert web.webhook('{"v": "fine"}').status_code == 202
    answer = client.post("/api/agents", content=chunks(padded_agent(LIMIT, name)), headers=JSON)
    assert answer.status_code == 201, answer.text

    assert_no_traceback(web)


def test_a_5000_character_path_gets_the_json_404(web: Web) -> None:
    answer = web.client.get("/api/workflows/" + "w" * 5000, headers=ADMIN)

    error = assert_error(answer, 404, "not_found")
    assert len(error["message"]) < 200
    assert_no_traceback(web)


def test_past_gunicorns_request_line_limit_gunicorn_answers_itself(web: Web) -> None:
    """docs/api.md documents it: a request line over 8190 bytes never reaches the app."""
    answer = web.client.get("/api/workflows/" + "w" * 9000, headers=ADMIN)

    assert answer.status_code == 414  # gunicorn's own page, not the JSON error format
    assert_no_traceback(web)
