"""Admission control's cheap refusal (issue 17, section 2): past the queue-depth limit a trigger
is answered 503 in front of Flask, before its body, its signature, a key or the database."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.web import admission, create_app
from app.web.context import WebContext
from app.workflows import save_workflow
from tests.statement_log import StatementLog
from tests.web.conftest import ADMIN, RecordingPublisher
from tests.web.test_errors import assert_error_format
from tests.web.test_openapi import error_schema_validator
from tests.web.test_triggers import BODY, SECRET, definition, fire, signed

#: Refusals are decided the same on both databases, and must read neither.
pytestmark = pytest.mark.both_databases

FULL = 10**9


class UnreadableBody(io.RawIOBase):
    """A request body that records any attempt to read it."""

    def __init__(self) -> None:
        self.reads = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.reads += 1
        raise AssertionError("a refused request's body was read")


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def depth() -> list[int | None]:
    """The queue depth the app sees; a test changes it in place."""
    return [FULL]


@pytest.fixture
def gated(
    web_settings: Settings,
    web_sessions: sessionmaker[Session],
    publisher: RecordingPublisher,
    depth: list[int | None],
) -> FlaskClient:
    with web_sessions.begin() as session:
        save_workflow(session, definition("lead", {"type": "webhook", "secrets": [SECRET]}))
    context = WebContext(
        settings=web_settings,
        sessions=web_sessions,
        publish=publisher,
        queue_depth=lambda: depth[0],
    )
    return create_app({"TESTING": True}, context=context).test_client()


@pytest.fixture
def statements(web_sessions: sessionmaker[Session]) -> StatementLog:
    return StatementLog(web_sessions.kw["bind"])


@pytest.mark.parametrize(
    "path", ["/api/triggers/webhook/lead", "/api/triggers/webhook", "/api/workflow/execute"]
)
def test_a_refused_trigger_reads_neither_its_body_nor_the_database(
    gated: FlaskClient, statements: StatementLog, publisher: RecordingPublisher, path: str
) -> None:
    body = UnreadableBody()
    answer = gated.post(
        path,
        data=BODY,
        headers={**signed(BODY), **ADMIN, "Content-Type": "application/json"},
        environ_overrides={"wsgi.input": body},
    )

    assert_error_format(answer, 503, "overloaded")
    assert int(answer.headers["Retry-After"]) > 0
    assert body.reads == 0
    assert statements.take() == []
    assert publisher.published == []


def test_a_refusal_keeps_the_callers_request_id(gated: FlaskClient) -> None:
    answer = gated.post("/api/triggers/webhook/lead", headers={"X-Request-ID": "sender-7.a"})
    assert answer.status_code == 503
    assert answer.headers["X-Request-ID"] == "sender-7.a"


def test_a_refusal_is_counted_in_the_trigger_and_request_metrics(gated: FlaskClient) -> None:
    def counted() -> tuple[float, float]:
        refused = {"source": "webhook", "reason": "overloaded"}
        timed = {"method": "POST", "route": admission.WEBHOOK_ROUTE, "status": "503"}
        return (
            REGISTRY.get_sample_value("dualmcp_triggers_refused_total", refused) or 0.0,
            REGISTRY.get_sample_value("dualmcp_http_request_duration_seconds_count", timed) or 0.0,
        )

    before = counted()
    assert fire(gated, BODY, signed(BODY)).status_code == 503
    assert counted() == (before[0] + 1, before[1] + 1)


def test_the_refusal_is_the_documented_error(gated: FlaskClient) -> None:
    document = gated.get("/api/openapi.json").json
    operation = document["paths"]["/api/triggers/webhook/{workflow_id}"]["post"]
    answer = fire(gated, BODY, signed(BODY))

    assert "503" in operation["responses"]
    assert not list(error_schema_validator(document).iter_errors(answer.json))


def test_below_the_limit_a_trigger_goes_on_to_the_view(
    gated: FlaskClient, depth: list[int | None], publisher: RecordingPublisher
) -> None:
    depth[0] = 0
    answer = gated.post("/api/workflow/execute", json={"workflow_id": "lead"}, headers=ADMIN)
    assert answer.status_code == 202
    assert len(publisher.published) == 1


def test_what_starts_no_run_is_served_while_the_queue_is_full(gated: FlaskClient) -> None:
    assert gated.get("/api/workflows/lead", headers=ADMIN).status_code == 200
    assert gated.post("/api/triggers/webhook/lead/extra").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("POST", "/api/triggers/webhook/a.b-c", admission.WEBHOOK_ROUTE),
        ("POST", "/api/triggers/webhook", admission.SEED_WEBHOOK_ROUTE),
        ("POST", "/api/workflow/execute", admission.EXECUTE_ROUTE),
        ("GET", "/api/triggers/webhook/lead", None),
        ("POST", "/api/triggers/webhook/", None),
        ("POST", "/api/triggers/webhook/lead/deliveries", None),
        ("POST", "/api/workflows", None),
    ],
)
def test_only_requests_that_start_runs_are_gated(method: str, path: str, route: str | None) -> None:
    assert admission.trigger_route(method, path) == route


def test_a_flood_of_refusals_is_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    warnings = admission._RefusalWarnings(clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger=admission.__name__):
        for _ in range(500):
            warnings.note(300, 200)
        now[0] += admission.WARN_EVERY_S
        warnings.note(300, 200)

    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[1].startswith("refused 500 new run(s)")
