"""The run API a dashboard needs (issue 15, section 1): every node of the definition with its
edges, attempts and timings; where a run came from; the list's time window and `has_more`;
ETags for cheap polling; and a repeated trigger answering the run's current status."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.models import WorkflowRun
from tests.web.conftest import ADMIN, READ, RecordingPublisher
from tests.web.factories import drive, save, start, two_step, unique_id
from tests.web.test_webhook_intake import SECRET, signed

#: The run and trigger contract: on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_databases


def branching(workflow_id: str | None = None) -> dict[str, Any]:
    """score -> check (then: hot, else: cold) -> done: one branch is a dead path."""
    return {
        "workflow_id": workflow_id or unique_id("branching"),
        "nodes": [
            {
                "id": "score",
                "type": "transform",
                "params": {"values": {"n": 90}},
                "next": "check",
                "retry": {"max_attempts": 3, "backoff_s": 1},
            },
            {
                "id": "check",
                "type": "conditional",
                "params": {"condition": "nodes.score.n >= 80"},
                "then": "hot",
                "else": "cold",
            },
            {"id": "hot", "type": "transform", "params": {"values": {"t": 1}}, "next": ["done"]},
            {"id": "cold", "type": "transform", "params": {"values": {"t": 0}}, "next": "done"},
            {"id": "done", "type": "transform", "params": {"values": {"ok": True}}},
        ],
    }


def run_of(client: FlaskClient, run_id: str) -> dict[str, Any]:
    answer = client.get(f"/api/runs/{run_id}", headers=READ)
    assert answer.status_code == 200, answer.json
    assert answer.json is not None
    return dict(answer.json)


# --- every node of the definition ------------------------------------------------------------


def test_a_queued_run_lists_every_node_unreached_ones_as_not_started(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    run_id = start(web_sessions, save(web_sessions, branching())).run_id

    run = run_of(client, run_id)

    assert [(n["node_id"], n["status"], n["attempt"]) for n in run["nodes"]] == [
        ("score", "pending", 0),
        ("check", "not_started", 0),
        ("hot", "not_started", 0),
        ("cold", "not_started", 0),
        ("done", "not_started", 0),
    ]
    check = run["nodes"][1]
    assert (check["type"], check["output"], check["attempts"], check["started_at"]) == (
        "conditional",
        None,
        [],
        None,
    )


def test_each_node_carries_its_edges_and_its_retry_budget(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    run_id = start(web_sessions, save(web_sessions, branching())).run_id

    nodes = {node["node_id"]: node for node in run_of(client, run_id)["nodes"]}

    edges = {
        node_id: (node["next"], node["then"], node["else"], node["max_attempts"])
        for node_id, node in nodes.items()
    }
    assert edges == {
        "score": (["check"], None, None, 3),
        "check": ([], "hot", "cold", 1),
        "hot": (["done"], None, None, 1),
        "cold": (["done"], None, None, 1),
        "done": ([], None, None, 1),
    }


def test_a_finished_run_shows_its_dead_path_as_skipped(
    client: FlaskClient, web_sessions: sessionmaker[Session], web_settings: Settings
) -> None:
    started = start(web_sessions, save(web_sessions, branching()))
    drive(web_sessions, web_settings, started.to_publish)

    run = run_of(client, started.run_id)

    statuses = {node["node_id"]: node["status"] for node in run["nodes"]}
    assert statuses == {
        "score": "succeeded",
        "check": "succeeded",
        "hot": "succeeded",
        "cold": "skipped",
        "done": "succeeded",
    }
    assert all(node["next_attempt_at"] is None for node in run["nodes"])
    assert run["duration_ms"] is not None and run["duration_ms"] >= 0
    score = run["nodes"][0]
    assert score["duration_ms"] is not None and score["attempts"] == []


# --- where a run came from -------------------------------------------------------------------


def test_a_run_not_started_has_no_duration_and_an_api_run_no_delivery(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    run_id = start(web_sessions, save(web_sessions, two_step())).run_id

    run = run_of(client, run_id)

    assert (run["source"], run["delivery_id"], run["retry_of"], run["duration_ms"]) == (
        "api",
        None,
        None,
        None,
    )


def hooked(sessions: sessionmaker[Session]) -> str:
    """A two-step workflow with a Standard Webhooks trigger (tests/web/test_webhook_intake.py)."""
    trigger = {"type": "webhook", "scheme": "standard", "secrets": [SECRET]}
    return save(sessions, two_step(unique_id("hooked")) | {"trigger": trigger})


def test_a_webhook_run_names_its_delivery(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = hooked(web_sessions)
    body = b'{"lead": 1}'
    headers = signed(body)

    accepted = client.post(f"/api/triggers/webhook/{workflow_id}", data=body, headers=headers)

    assert accepted.status_code == 202 and accepted.json is not None
    run = run_of(client, accepted.json["run_id"])
    assert (run["source"], run["delivery_id"]) == ("webhook", headers["webhook-id"])
    request_id = accepted.headers["X-Request-ID"]
    assert run["origin"] == {"delivery_id": headers["webhook-id"], "request_id": request_id}


def test_a_retry_from_the_start_names_the_run_it_retries(
    client: FlaskClient, web_sessions: sessionmaker[Session], web_settings: Settings
) -> None:
    started = start(web_sessions, save(web_sessions, two_step()))
    drive(web_sessions, web_settings, started.to_publish)

    answer = client.post(f"/api/runs/{started.run_id}/retry", json={"from": "start"}, headers=ADMIN)

    assert answer.json is not None
    run = run_of(client, answer.json["run_id"])
    assert (run["source"], run["retry_of"]) == ("retry", started.run_id)


# --- the list: a time window and has_more ----------------------------------------------------


def _created(sessions: sessionmaker[Session], run_id: str, at: datetime) -> None:
    with sessions.begin() as session:
        session.execute(
            update(WorkflowRun).where(WorkflowRun.run_id == uuid.UUID(run_id)).values(created_at=at)
        )


def test_runs_are_filtered_by_created_time_since_inclusive_until_exclusive(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = save(web_sessions, two_step())
    noon = datetime(2030, 5, 1, 12, tzinfo=UTC)
    ids = {}
    for hour in (10, 12, 14):
        ids[hour] = start(web_sessions, workflow_id).run_id
        _created(web_sessions, ids[hour], noon.replace(hour=hour))

    def listed(query: dict[str, str]) -> list[str]:
        page = client.get("/api/runs", query_string=query, headers=READ).json
        assert page is not None
        return [run["run_id"] for run in page["runs"]]

    assert listed({"since": "2030-05-01T12:00:00Z"}) == [ids[14], ids[12]]
    assert listed({"until": "2030-05-01T12:00:00Z"}) == [ids[10]]
    assert listed({"since": "2030-05-01T11:00:00+00:00", "until": "2030-05-01T13:00:00"}) == [
        ids[12]
    ]
    assert listed({"since": "2030-05-01T13:30:00+02:00"}) == [ids[14], ids[12]]  # 11:30 UTC


def test_a_page_says_whether_another_follows(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = save(web_sessions, two_step())
    for _ in range(3):
        start(web_sessions, workflow_id)

    first = client.get("/api/runs?limit=2", headers=READ).json
    assert first is not None
    last = client.get(f"/api/runs?limit=2&cursor={first['next_cursor']}", headers=READ).json
    assert last is not None

    assert (len(first["runs"]), first["has_more"]) == (2, True)
    assert (len(last["runs"]), last["has_more"], last["next_cursor"]) == (1, False, None)


# --- ETag and If-None-Match ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/runs/{}", "/api/workflow/status?run_id={}"])
def test_an_unchanged_run_answers_304_without_a_body(
    client: FlaskClient, web_sessions: sessionmaker[Session], path: str
) -> None:
    run_id = start(web_sessions, save(web_sessions, two_step())).run_id
    first = client.get(path.format(run_id), headers=READ)
    etag = first.headers["ETag"]

    again = client.get(path.format(run_id), headers=READ | {"If-None-Match": etag})

    assert first.status_code == 200 and etag
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag


def test_a_running_runs_etag_does_not_change_with_the_clock_alone(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    run_id = start(web_sessions, save(web_sessions, two_step())).run_id
    with web_sessions.begin() as session:
        session.execute(
            update(WorkflowRun)
            .where(WorkflowRun.run_id == uuid.UUID(run_id))
            .values(status="running", started_at=datetime.now(UTC) - timedelta(seconds=5))
        )
    first = client.get(f"/api/runs/{run_id}", headers=READ)

    again = client.get(
        f"/api/runs/{run_id}", headers=READ | {"If-None-Match": first.headers["ETag"]}
    )

    assert first.json is not None and first.json["duration_ms"] >= 5000
    assert again.status_code == 304


def test_a_changed_run_answers_200_with_a_new_etag(
    client: FlaskClient, web_sessions: sessionmaker[Session], web_settings: Settings
) -> None:
    started = start(web_sessions, save(web_sessions, two_step()))
    etag = client.get(f"/api/runs/{started.run_id}", headers=READ).headers["ETag"]
    drive(web_sessions, web_settings, started.to_publish)

    answer = client.get(f"/api/runs/{started.run_id}", headers=READ | {"If-None-Match": etag})

    assert answer.status_code == 200
    assert answer.json is not None and answer.json["status"] == "succeeded"
    assert answer.headers["ETag"] != etag


# --- a repeated trigger answers the run's status ---------------------------------------------


def test_a_repeated_execute_answers_the_runs_current_status(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
    publisher: RecordingPublisher,
) -> None:
    workflow_id = save(web_sessions, two_step())
    headers = ADMIN | {"Idempotency-Key": unique_id("key")}
    body = {"workflow_id": workflow_id, "input": {"n": 1}}
    first = client.post("/api/workflow/execute", json=body, headers=headers)
    drive(web_sessions, web_settings, publisher.published)

    again = client.post("/api/workflow/execute", json=body, headers=headers)

    assert first.json is not None and first.json["status"] == "queued"
    assert again.status_code == 200
    assert again.json == {**first.json, "status": "succeeded", "duplicate": True}


def test_a_repeated_webhook_delivery_answers_the_runs_current_status(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
    publisher: RecordingPublisher,
) -> None:
    workflow_id = hooked(web_sessions)
    body = b'{"lead": 2}'
    headers = signed(body)
    first = client.post(f"/api/triggers/webhook/{workflow_id}", data=body, headers=headers)
    assert first.json is not None
    client.post(f"/api/runs/{first.json['run_id']}/cancel", headers=ADMIN)

    again = client.post(f"/api/triggers/webhook/{workflow_id}", data=body, headers=headers)

    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json == {**first.json, "status": "cancelled", "duplicate": True}
