"""GET /metrics: the counters the front end keeps, gauges read at scrape time, every request's
duration by route template, and the scrape token."""

from __future__ import annotations

import base64
import uuid

import pytest
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.web import create_app
from app.web.context import WebContext
from app.workflows import save_workflow
from tests.web.conftest import ADMIN, RecordingPublisher, web_test_settings
from tests.web.factories import save, start, two_step, unique_id
from tests.web.test_triggers import signed

SECRET = "whsec_" + base64.b64encode(b"metrics-secret-32-bytes-long!!!!").decode()


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _requests(method: str, route: str, status: str) -> float:
    name = "dualmcp_http_request_duration_seconds_count"
    return _value(name, method=method, route=route, status=status)


def _scrape(client: FlaskClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    families = text_string_to_metric_families(response.get_data(as_text=True))
    return {
        family.name: {tuple(sorted(s.labels.items())): s.value for s in family.samples}
        for family in families
    }


@pytest.fixture
def webhook_workflow(web_sessions: sessionmaker[Session]) -> str:
    workflow_id = unique_id("metered")
    definition = two_step(workflow_id)
    definition["trigger"] = {"type": "webhook", "secrets": [SECRET]}
    with web_sessions.begin() as session:
        save_workflow(session, definition)
    return workflow_id


def test_triggers_are_counted_as_accepted_replayed_and_refused_by_reason(
    client: FlaskClient, webhook_workflow: str
) -> None:
    name = "dualmcp_triggers_{}_total"
    before = (
        _value(name.format("accepted"), source="webhook"),
        _value(name.format("replayed"), source="webhook"),
        _value(name.format("refused"), source="webhook", reason="invalid_signature:mismatch"),
        _value(name.format("refused"), source="api", reason="not_found"),
    )
    body = b'{"n": 1}'
    path = f"/api/triggers/webhook/{webhook_workflow}"
    assert client.post(path, data=body, headers=signed(body, secret=SECRET)).status_code == 202
    assert client.post(path, data=body, headers=signed(body, secret=SECRET)).status_code == 200
    forged = signed(body, secret="whsec_" + base64.b64encode(b"x" * 32).decode())
    assert client.post(path, data=body, headers=forged).status_code == 401
    missing = {"workflow_id": "no-such-workflow", "input": {}}
    assert client.post("/api/workflow/execute", json=missing, headers=ADMIN).status_code == 404

    after = (
        _value(name.format("accepted"), source="webhook"),
        _value(name.format("replayed"), source="webhook"),
        _value(name.format("refused"), source="webhook", reason="invalid_signature:mismatch"),
        _value(name.format("refused"), source="api", reason="not_found"),
    )
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1, 1]


def test_the_scrape_shows_the_counters_and_the_queue_depth(
    web_settings: Settings, web_sessions: sessionmaker[Session]
) -> None:
    context = WebContext(
        settings=web_settings,
        sessions=web_sessions,
        publish=RecordingPublisher(),
        queue_depth=lambda: 42,
    )
    client = create_app({"TESTING": True}, context=context).test_client()
    workflow_id = unique_id("active")
    with web_sessions.begin() as session:
        save_workflow(session, two_step(workflow_id))
    assert (
        client.post(
            "/api/workflow/execute", json={"workflow_id": workflow_id}, headers=ADMIN
        ).status_code
        == 202
    )

    scraped = _scrape(client)

    assert scraped["dualmcp_queue_depth"] == {(): 42}
    assert scraped["dualmcp_queue_depth_limit"] == {(): web_settings.max_queue_depth}
    assert scraped["dualmcp_runs_active"][(("status", "queued"),)] >= 1
    for family in ("dualmcp_triggers_accepted", "dualmcp_node_duration_seconds"):
        assert family in scraped


def test_an_unknown_queue_depth_is_left_out_rather_than_shown_as_zero(
    client: FlaskClient,
) -> None:
    assert "dualmcp_queue_depth" not in _scrape(client)


def test_requests_are_timed_by_route_template_not_by_path(client: FlaskClient) -> None:
    before = _requests("GET", "/api/runs/<run_id>", "404")
    for _ in range(3):  # three paths, one series
        assert client.get(f"/api/runs/{uuid.uuid4()}", headers=ADMIN).status_code == 404
    assert _requests("GET", "/api/runs/<run_id>", "404") == before + 3
    assert (
        REGISTRY.get_sample_value(
            "dualmcp_http_request_duration_seconds_count",
            {"method": "GET", "route": f"/api/runs/{uuid.uuid4()}", "status": "404"},
        )
        is None
    )


def test_a_path_no_route_matches_is_labelled_other(client: FlaskClient) -> None:
    before = _requests("GET", "other", "404")
    assert client.get(f"/no/such/page/{uuid.uuid4()}").status_code == 404
    assert _requests("GET", "other", "404") == before + 1


def test_a_refused_request_is_timed_with_its_status(client: FlaskClient) -> None:
    before = _requests("POST", "/api/workflow/execute", "401")
    assert client.post("/api/workflow/execute", json={"workflow_id": "x"}).status_code == 401
    assert _requests("POST", "/api/workflow/execute", "401") == before + 1


def test_a_cancelled_run_is_counted_under_its_workflow(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = save(web_sessions, two_step(unique_id("cancelled")))
    run_id = start(web_sessions, workflow_id).run_id
    assert client.post(f"/api/runs/{run_id}/cancel", headers=ADMIN).status_code == 200
    finished = _value("dualmcp_runs_finished_total", status="cancelled", workflow=workflow_id)
    assert finished == 1


@pytest.fixture
def guarded(database_url: str, web_sessions: sessionmaker[Session]) -> FlaskClient:
    """The app with DUALMCP_METRICS_TOKEN set."""
    settings = web_test_settings(database_url, DUALMCP_METRICS_TOKEN="scrape-token-123")
    context = WebContext(settings=settings, sessions=web_sessions, publish=RecordingPublisher())
    return create_app({"TESTING": True}, context=context).test_client()


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token-123", "Basic scrape-token-123", "Bearer "]
)
def test_with_a_metrics_token_a_scrape_without_it_is_refused(
    guarded: FlaskClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = guarded.get("/metrics", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert b"dualmcp_" not in answer.data


def test_with_a_metrics_token_a_scrape_with_it_is_answered(guarded: FlaskClient) -> None:
    answer = guarded.get("/metrics", headers={"Authorization": "Bearer scrape-token-123"})
    assert answer.status_code == 200
    assert b"dualmcp_http_request_duration_seconds_bucket" in answer.data
