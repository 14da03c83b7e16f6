"""GET /metrics: the counters the front end keeps, and gauges read at scrape time."""

from __future__ import annotations

import base64

import pytest
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.web import create_app
from app.web.context import WebContext
from app.workflows import save_workflow
from tests.web.conftest import ADMIN, RecordingPublisher
from tests.web.factories import two_step, unique_id
from tests.web.test_triggers import signed

SECRET = "whsec_" + base64.b64encode(b"metrics-secret-32-bytes-long!!!!").decode()


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


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
