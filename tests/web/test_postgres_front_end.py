"""The front end's PostgreSQL paths, statement by statement.

Webhook triggers: a front-end process checks signatures against its copy of the workflow's
trigger settings, and the insert refuses a copy that is no longer current (app/web/triggers.py,
app/workflows/triggers.py). These tests change the workflow behind the copy's back, as another
process would, and check nothing is refused or lost because of it. Run status: the read that
dashboards poll is two SELECTs in autocommit, no BEGIN or ROLLBACK."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.models import TriggerEvent, WorkflowRun
from app.workflows import save_workflow
from app.workflows.store import set_workflow_status
from tests.statement_log import StatementLog
from tests.web.conftest import READ
from tests.web.test_triggers import OLD_SECRET, SECRET, definition, signed

BODY = b'{"lead_id": "42"}'


@pytest.fixture
def client(pg_client: Any) -> Any:
    return pg_client


@pytest.fixture
def workflow_id(pg_sessions: sessionmaker[Session]) -> str:
    workflow_id = f"lead-{uuid.uuid4().hex[:8]}"
    _save(pg_sessions, workflow_id, [SECRET])
    return workflow_id


def _save(sessions: sessionmaker[Session], workflow_id: str, secrets: list[str]) -> None:
    """A change made elsewhere: this process's copy of the trigger settings is not told."""
    with sessions.begin() as session:
        save_workflow(session, definition(workflow_id, {"type": "webhook", "secrets": secrets}))


def _fire(client: FlaskClient, workflow_id: str, message_id: str, secret: str = SECRET) -> Any:
    headers = signed(BODY, secret=secret, message_id=message_id)
    return client.post(f"/api/triggers/webhook/{workflow_id}", data=BODY, headers=headers)


def _versions(sessions: sessionmaker[Session], workflow_id: str) -> list[int]:
    with sessions() as session:
        query = select(WorkflowRun.workflow_version).where(WorkflowRun.workflow_id == workflow_id)
        return sorted(session.scalars(query))


def _events(sessions: sessionmaker[Session], workflow_id: str) -> int:
    with sessions() as session:
        query = select(func.count()).where(TriggerEvent.workflow_id == workflow_id)
        return int(session.scalar(query) or 0)


def test_a_known_workflow_is_triggered_by_one_statement(
    client: FlaskClient, pg_engine: Engine, pg_sessions: sessionmaker, workflow_id: str
) -> None:
    log = StatementLog(pg_engine)
    assert _fire(client, workflow_id, "msg_1").status_code == 202
    assert log.take() == ["SELECT", "SELECT", "WITH"]  # the first reads workflow and definition

    assert _fire(client, workflow_id, "msg_2").status_code == 202
    assert log.take() == ["WITH"]  # the next ones write event + run + entry node, nothing else
    replay = _fire(client, workflow_id, "msg_2")
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert _versions(pg_sessions, workflow_id) == [1, 1]


def test_a_new_version_saved_elsewhere_is_read_again_and_used(
    client: FlaskClient, pg_engine: Engine, pg_sessions: sessionmaker, workflow_id: str
) -> None:
    assert _fire(client, workflow_id, "msg_1").status_code == 202
    _save(pg_sessions, workflow_id, [SECRET])  # version 2, same secret
    log = StatementLog(pg_engine)

    assert _fire(client, workflow_id, "msg_2").status_code == 202
    # Refused as stale, the workflow and the new definition read, then written.
    assert log.take() == ["WITH", "SELECT", "SELECT", "WITH"]
    assert _versions(pg_sessions, workflow_id) == [1, 2]
    assert _events(pg_sessions, workflow_id) == 2  # the refused statement wrote nothing


def test_a_secret_rotated_elsewhere_is_accepted_without_a_logged_refusal(
    client: FlaskClient,
    pg_sessions: sessionmaker,
    workflow_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert _fire(client, workflow_id, "msg_1").status_code == 202
    _save(pg_sessions, workflow_id, [OLD_SECRET])  # the copy knows only SECRET

    with caplog.at_level(logging.WARNING, logger="app.web.triggers"):
        accepted = _fire(client, workflow_id, "msg_2", secret=OLD_SECRET)
        refused = _fire(client, workflow_id, "msg_3", secret=SECRET)  # retired now
    assert accepted.status_code == 202
    assert refused.status_code == 401
    rejections = [record for record in caplog.records if "rejected" in record.getMessage()]
    assert len(rejections) == 1  # the real refusal, once; not the stale copy's
    assert _versions(pg_sessions, workflow_id) == [1, 2]


def test_a_pause_elsewhere_refuses_the_next_trigger_and_recording_resumes_after(
    client: FlaskClient, pg_sessions: sessionmaker, workflow_id: str
) -> None:
    assert _fire(client, workflow_id, "msg_1").status_code == 202
    with pg_sessions.begin() as session:
        set_workflow_status(session, workflow_id, "paused")

    paused = _fire(client, workflow_id, "msg_2")
    assert paused.status_code == 409 and "paused" in paused.get_json()["error"]["message"]
    assert _events(pg_sessions, workflow_id) == 1
    with pg_sessions.begin() as session:
        set_workflow_status(session, workflow_id, "active")
    assert _fire(client, workflow_id, "msg_2").status_code == 202
    assert _events(pg_sessions, workflow_id) == 2


def test_a_run_s_status_is_two_selects_without_a_transaction(
    client: FlaskClient, pg_engine: Engine, workflow_id: str
) -> None:
    run_id = _fire(client, workflow_id, "msg_1").get_json()["run_id"]
    log = StatementLog(pg_engine)

    shown = client.get(f"/api/runs/{run_id}", headers=READ).get_json()
    assert log.statements == ["SELECT", "SELECT"] and log.autocommit == [True, True]
    assert shown["run_id"] == run_id and shown["status"] == "queued"
    assert shown["input"] == {"lead_id": "42"} and shown["workflow_version"] == 1
    assert [(node["node_id"], node["status"]) for node in shown["nodes"]] == [("shape", "pending")]
