"""Retry of a failed run from its failed node (POST /api/runs/<id>/retry {"from": "failed"}),
on SQLite and on PostgreSQL (tests/workflows/conftest.py): the re-opened node gets its retry
policy again, counted from the resume, and the run keeps the time it first started (issue 14)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from app.models import NodeRun, WorkflowRun, utcnow
from app.workflows import get_run, retry_run
from app.workflows.runs import NodeRef
from tests.http_peer import HttpPeer
from tests.workflows.conftest import Driver


def _fetch_then_shape(url: str, retry: dict[str, Any]) -> dict[str, Any]:
    return {
        "workflow_id": f"resume-{uuid.uuid4().hex[:8]}",
        "nodes": [
            {
                "id": "fetch",
                "type": "data_fetch",
                "params": {"url": url},
                "retry": retry,
                "next": "shape",
            },
            {"id": "shape", "type": "transform", "params": {"values": {"got": True}}},
        ],
    }


def _fetch(worker: Driver, run_id: str) -> dict[str, Any]:
    with worker.sessions() as session:
        run = get_run(session, run_id)
    return next(node for node in run["nodes"] if node["node_id"] == "fetch")


def _run(worker: Driver, run_id: str) -> dict[str, Any]:
    with worker.sessions() as session:
        return get_run(session, run_id)


def _started_at(worker: Driver, run_id: str) -> datetime | None:
    with worker.sessions() as session:
        return session.scalar(
            select(WorkflowRun.started_at).where(WorkflowRun.run_id == uuid.UUID(run_id))
        )


def _resume(worker: Driver, run_id: str) -> None:
    with worker.sessions.begin() as session:
        started = retry_run(session, run_id, from_="failed", version="original")
    assert started.run_id == run_id
    worker.queue.extend(started.to_publish)


def _make_due(worker: Driver, run_id: str) -> None:
    """As if the retry's wait had passed: the node is due, and its message arrives."""
    with worker.sessions.begin() as session:
        session.execute(
            update(NodeRun)
            .where(NodeRun.run_id == uuid.UUID(run_id), NodeRun.node_id == "fetch")
            .values(next_attempt_at=utcnow())
        )
    worker.queue.append(NodeRef(run_id, "fetch"))


def test_a_resumed_node_gets_its_whole_retry_budget_again(
    worker: Driver, http_peer: HttpPeer
) -> None:
    route = f"/resume-{uuid.uuid4().hex[:8]}"
    http_peer.reply(route, json={"ok": True}, fail_times=5)  # attempts 1 to 5 fail
    retry = {"max_attempts": 3, "backoff_s": 0, "jitter": False}
    run_id = worker.start(_fetch_then_shape(http_peer.url + route, retry))
    worker.drain()
    assert _run(worker, run_id)["status"] == "failed"
    assert _fetch(worker, run_id)["attempt"] == 3

    _resume(worker, run_id)
    worker.drain()

    run = _run(worker, run_id)
    assert run["status"] == "succeeded"
    # The count goes on (4, 5, 6); the budget of three attempts is counted from the resume.
    assert _fetch(worker, run_id)["attempt"] == 6
    assert [node["status"] for node in run["nodes"]] == ["succeeded", "succeeded"]


def test_a_resumed_node_waits_its_backoff_after_a_failure(
    worker: Driver, http_peer: HttpPeer
) -> None:
    route = f"/resume-{uuid.uuid4().hex[:8]}"
    http_peer.reply(route, json={"ok": True}, fail_times=100)
    retry = {"max_attempts": 2, "backoff_s": 30, "jitter": False}
    run_id = worker.start(_fetch_then_shape(http_peer.url + route, retry))
    worker.drain()  # attempt 1 fails; attempt 2 is 30 s away
    _make_due(worker, run_id)
    worker.drain()  # attempt 2 fails: the run fails
    assert _run(worker, run_id)["status"] == "failed"

    _resume(worker, run_id)
    before = utcnow()
    worker.drain()  # attempt 3 fails: the first of the new budget, so a wait follows

    fetch = _fetch(worker, run_id)
    assert (fetch["status"], fetch["attempt"]) == ("retrying", 3)
    assert _run(worker, run_id)["status"] == "running"
    with worker.sessions() as session:
        next_attempt_at = session.scalar(
            select(NodeRun.next_attempt_at).where(
                NodeRun.run_id == uuid.UUID(run_id), NodeRun.node_id == "fetch"
            )
        )
    assert next_attempt_at is not None
    assert 29 < (next_attempt_at - before).total_seconds() < 35  # backoff_s, not at once


def test_resuming_keeps_the_time_the_run_first_started(worker: Driver, http_peer: HttpPeer) -> None:
    route = f"/resume-{uuid.uuid4().hex[:8]}"
    http_peer.reply(route, json={"ok": True}, fail_times=1)
    run_id = worker.start(_fetch_then_shape(http_peer.url + route, {"max_attempts": 1}))
    worker.drain()
    first_started = _started_at(worker, run_id)
    assert first_started is not None and _run(worker, run_id)["status"] == "failed"

    _resume(worker, run_id)
    worker.drain()

    assert _run(worker, run_id)["status"] == "succeeded"
    assert _started_at(worker, run_id) == first_started
