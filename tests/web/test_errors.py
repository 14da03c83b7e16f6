"""The error matrix: every failure answers {"error": {"code", "message", "details"}}, never a
stack trace, with the status a client can act on."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.config import Settings
from app.models import make_engine, make_session_factory
from app.web import create_app
from app.web.api import ENDPOINTS
from app.web.context import WebContext
from tests.web.conftest import ADMIN, ADMIN_KEY, READ, RecordingPublisher

AGENT = {"agent_name": "Errors"}


def assert_error_format(answer: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.data
    assert answer.mimetype == "application/json"
    body = answer.json
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert isinstance(body["error"]["code"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    assert "Traceback" not in answer.get_data(as_text=True)
    error: dict[str, Any] = body["error"]
    return error


def test_malformed_json_is_a_400(client: FlaskClient) -> None:
    answer = client.post(
        "/api/agents", data='{"agent_name": ', content_type="application/json", headers=ADMIN
    )

    assert_error_format(answer, 400, "malformed_json")


def test_a_body_that_is_not_json_is_a_415(client: FlaskClient) -> None:
    answer = client.post(
        "/api/agents", data="agent_name=x", content_type="text/plain", headers=ADMIN
    )

    assert_error_format(answer, 415, "unsupported_media_type")


def test_a_body_over_the_limit_is_a_413(client: FlaskClient) -> None:
    body = json.dumps({"agent_name": "x" * (65 * 1024)})

    answer = client.post("/api/agents", data=body, content_type="application/json", headers=ADMIN)

    assert_error_format(answer, 413)


def test_deep_nesting_is_a_400(client: FlaskClient) -> None:
    body = '{"agent_name": "x", "personality_traits": {"deep": ' + "[" * 60 + "]" * 60 + "}}"

    answer = client.post("/api/agents", data=body, content_type="application/json", headers=ADMIN)

    assert_error_format(answer, 400, "malformed_json")


@pytest.mark.parametrize(("levels", "status"), [(32, 422), (33, 400)])
def test_nesting_up_to_the_limit_reaches_validation(
    client: FlaskClient, levels: int, status: int
) -> None:
    inner = "[" * (levels - 2) + "1" + "]" * (levels - 2)  # two levels are the object's own
    body = '{"agent_name": "x", "personality_traits": {"deep": ' + inner + "}}"

    answer = client.post("/api/agents", data=body, content_type="application/json", headers=ADMIN)

    assert_error_format(answer, status)


def test_valid_json_that_fails_validation_is_a_422_listing_each_field(
    client: FlaskClient,
) -> None:
    answer = client.post(
        "/api/agents", json={"agent_name": "", "llm_config": {"temperature": -1}}, headers=ADMIN
    )

    error = assert_error_format(answer, 422, "validation_failed")
    problems = error["details"]["problems"]
    assert sorted(p["path"] for p in problems) == ["agent_name", "llm_config.temperature"]
    assert all(set(p) == {"code", "path", "message"} for p in problems)


def test_no_key_is_a_401(client: FlaskClient) -> None:
    answer = client.get("/api/agents")

    assert_error_format(answer, 401, "unauthorized")
    assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_a_bad_key_is_a_401(client: FlaskClient) -> None:
    answer = client.get("/api/agents", headers={"Authorization": "Bearer not-a-key"})

    assert_error_format(answer, 401, "unauthorized")


def test_a_read_key_on_a_write_endpoint_is_a_403(client: FlaskClient) -> None:
    answer = client.post("/api/agents", json=AGENT, headers=READ)

    assert_error_format(answer, 403, "forbidden")


def test_auth_is_checked_before_the_body(client: FlaskClient) -> None:
    answer = client.post("/api/agents", data="{", content_type="application/json")

    assert_error_format(answer, 401)


def test_an_unknown_run_is_a_404(client: FlaskClient) -> None:
    answer = client.get("/api/runs/00000000-0000-0000-0000-000000000000", headers=READ)

    assert_error_format(answer, 404, "not_found")


def test_an_unknown_path_is_a_404(client: FlaskClient) -> None:
    assert_error_format(client.get("/api/nothing-here", headers=READ), 404)


def test_a_wrong_method_is_a_405(client: FlaskClient) -> None:
    assert_error_format(client.delete("/api/runs", headers=ADMIN), 405)


def test_a_duplicate_is_a_409(client: FlaskClient) -> None:
    client.post("/api/agents", json=AGENT | {"agent_id": "twice"}, headers=ADMIN)

    answer = client.post("/api/agents", json=AGENT | {"agent_id": "twice"}, headers=ADMIN)

    assert_error_format(answer, 409, "conflict")


def test_an_unreachable_database_is_a_503_with_retry_after(tmp_path: Path) -> None:
    settings = Settings(
        DATABASE_URL=f"sqlite:///{tmp_path / 'missing' / 'dir' / 'web.db'}",
        DUALMCP_API_KEYS=f"admin:{ADMIN_KEY}",
        CELERY_BROKER_URL="memory://",
    )
    sessions = make_session_factory(make_engine(settings.database_url))
    context = WebContext(settings=settings, sessions=sessions, publish=RecordingPublisher())
    client = create_app({"TESTING": True}, context=context).test_client()

    answer = client.get("/api/runs", headers=ADMIN)

    assert_error_format(answer, 503, "unavailable")
    assert answer.headers["Retry-After"].isdigit()


def test_an_unexpected_error_is_a_500_without_a_stack_trace(app: Flask) -> None:
    def explode() -> str:
        raise RuntimeError("secret detail /etc/passwd")

    app.add_url_rule("/explode", view_func=explode)

    answer = app.test_client().get("/explode")

    error = assert_error_format(answer, 500, "internal_error")
    assert "secret detail" not in error["message"]


def _concrete(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?[a-zA-Z_]+>", "no-such-id", rule)


@pytest.mark.parametrize(
    "body",
    [None, "{}", "[]", '"text"', "null", "123", '{"nodes": [{}], "agent_name": 5, "from": 7}'],
    ids=["none", "object", "array", "string", "null", "number", "wrong-types"],
)
def test_no_endpoint_answers_500_to_odd_input(client: FlaskClient, body: str | None) -> None:
    for point in ENDPOINTS:
        if point.tag not in ("agents", "workflows", "runs", "ops"):
            continue  # the trigger endpoints have their own matrix (test_triggers.py)
        kwargs: dict[str, Any] = {"headers": ADMIN, "query_string": {"run_id": "x", "limit": "-"}}
        if body is not None:
            kwargs |= {"data": body, "content_type": "application/json"}
        answer = client.open(_concrete(point.rule), method=point.method, **kwargs)
        assert answer.status_code < 500 or point.rule == "/readyz", (point.rule, body)
        if answer.status_code >= 400:
            assert_error_format(answer, answer.status_code)
