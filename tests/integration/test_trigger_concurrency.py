"""50 concurrent copies of one signed delivery start ONE run, on the real PostgreSQL.

The unique (workflow_id, idempotency_key) index makes every loser wait for the winner's commit,
then answer with the winner's run (app/workflows/triggers.py). No worker is needed: publishing
is recorded, not sent.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook

from app.config import Settings
from app.models import TriggerEvent, WorkflowRun, make_engine, make_session_factory
from app.web import create_app
from app.web.context import WebContext
from app.workflows import save_workflow
from tests.web.conftest import RecordingPublisher

COPIES = 50
SECRET = "whsec_" + base64.b64encode(b"concurrency-secret-32-bytes-long").decode()


@pytest.fixture
def sessions(migrated_postgres: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(migrated_postgres)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def app(
    migrated_postgres: str, sessions: sessionmaker[Session], publisher: RecordingPublisher
) -> Flask:
    settings = Settings(DATABASE_URL=migrated_postgres, CELERY_BROKER_URL="memory://")
    context = WebContext(settings=settings, sessions=sessions, publish=publisher)
    return create_app({"TESTING": True}, context=context)


@pytest.fixture
def workflow_id(sessions: sessionmaker[Session]) -> str:
    workflow_id = f"race-{uuid.uuid4().hex[:8]}"
    with sessions.begin() as session:
        save_workflow(
            session,
            {
                "workflow_id": workflow_id,
                "trigger": {"type": "webhook", "secrets": [SECRET]},
                "nodes": [{"id": "only", "type": "transform", "params": {"values": {}}}],
            },
        )
    return workflow_id


def signed_headers(body: bytes, message_id: str) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(message_id, now, body.decode()),
    }


def fire_together(app: Flask, path: str, requests: list[tuple[bytes, dict[str, str]]]) -> list[Any]:
    """Every request from its own thread and client, released at the same instant."""
    barrier = threading.Barrier(len(requests))

    def one(request: tuple[bytes, dict[str, str]]) -> tuple[int, dict[str, Any], str | None]:
        body, headers = request
        client = app.test_client()
        barrier.wait(timeout=30)
        response = client.post(path, data=body, headers=headers)
        return response.status_code, response.json, response.headers.get("Idempotent-Replayed")

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(one, requests))


def counts(sessions: sessionmaker[Session], workflow_id: str) -> tuple[int, int]:
    with sessions() as session:
        runs = session.scalar(select(func.count()).where(WorkflowRun.workflow_id == workflow_id))
        events = session.scalar(select(func.count()).where(TriggerEvent.workflow_id == workflow_id))
    return int(runs or 0), int(events or 0)


def test_fifty_concurrent_identical_deliveries_start_one_run(
    app: Flask,
    sessions: sessionmaker[Session],
    publisher: RecordingPublisher,
    workflow_id: str,
) -> None:
    body = b'{"lead_id": "42"}'
    headers = signed_headers(body, f"msg_{uuid.uuid4().hex}")
    started = time.monotonic()
    answers = fire_together(app, f"/api/triggers/webhook/{workflow_id}", [(body, headers)] * COPIES)
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200] * (COPIES - 1) + [202], answers
    run_ids = {answer["run_id"] for _, answer, _ in answers}
    assert len(run_ids) == 1
    duplicates = [answer for status, answer, _ in answers if status == 200]
    assert all(answer["duplicate"] is True for answer in duplicates)
    assert all(replayed == "true" for status, _, replayed in answers if status == 200)
    assert counts(sessions, workflow_id) == (1, 1)
    assert [ref.run_id for ref in publisher.published] == list(run_ids)
    assert time.monotonic() - started < 60


def test_concurrent_deliveries_of_one_key_with_two_bodies_start_one_run(
    app: Flask, sessions: sessionmaker[Session], workflow_id: str
) -> None:
    message_id = f"msg_{uuid.uuid4().hex}"
    bodies = [b'{"variant": "a"}', b'{"variant": "b"}']
    requests = [(bodies[i % 2], signed_headers(bodies[i % 2], message_id)) for i in range(COPIES)]
    answers = fire_together(app, f"/api/triggers/webhook/{workflow_id}", requests)
    by_status: dict[int, int] = {}
    for status, _, _ in answers:
        by_status[status] = by_status.get(status, 0) + 1
    # The winner's copies are duplicates; the other body's copies reuse the key: 422.
    assert by_status == {202: 1, 200: COPIES // 2 - 1, 422: COPIES // 2}, answers
    assert counts(sessions, workflow_id) == (1, 1)
