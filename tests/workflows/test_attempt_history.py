"""Each node's earlier attempts (issue 15): recorded when another attempt follows (a retry, a
lost worker, a resume), on SQLite and on PostgreSQL (tests/workflows/conftest.py), and shown
by get_run with their times and errors, oldest first."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update

from app.models import NodeRun, utcnow
from app.workflows import get_run, retry_run
from app.workflows.completion import complete_with_retry
from app.workflows.execution import Lease, Outcome, lease_node
from app.workflows.node_runs import WORKER_LOST
from app.workflows.sweeper import sweep
from tests.http_peer import HttpPeer
from tests.workflows.conftest import Driver


def _fetch_then_shape(url: str, retry: dict[str, Any] | None = None) -> dict[str, Any]:
    fetch: dict[str, Any] = {"id": "fetch", "type": "data_fetch", "params": {"url": url}}
    return {
        "workflow_id": f"history-{uuid.uuid4().hex[:8]}",
        "nodes": [
            {**fetch, "next": "shape", **({"retry": retry} if retry else {})},
            {"id": "shape", "type": "transform", "params": {"values": {"got": True}}},
        ],
    }


def _node(worker: Driver, run_id: str, node_id: str) -> dict[str, Any]:
    with worker.sessions() as session:
        run = get_run(session, run_id)
    return next(node for node in run["nodes"] if node["node_id"] == node_id)


def _time(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


def _flaky(peer: HttpPeer, fail_times: int) -> str:
    route = f"/{uuid.uuid4().hex[:8]}"
    peer.reply(route, json={"ok": True}, fail_times=fail_times)
    return peer.url + route


def test_a_retried_node_lists_its_failed_attempt_with_times_and_error(
    worker: Driver, http_peer: HttpPeer
) -> None:
    url = _flaky(http_peer, fail_times=1)
    run_id = worker.start(_fetch_then_shape(url, {"max_attempts": 3, "backoff_s": 0}))

    worker.drain()

    fetch = _node(worker, run_id, "fetch")
    assert (fetch["status"], fetch["attempt"], fetch["error"]) == ("succeeded", 2, None)
    [first] = fetch["attempts"]
    assert first["attempt"] == 1
    assert "503" in first["error"]
    started, finished = _time(first["started_at"]), _time(first["finished_at"])
    assert started <= finished <= _time(fetch["started_at"])


def test_a_node_waiting_for_its_retry_shows_when_and_why(
    worker: Driver, http_peer: HttpPeer
) -> None:
    url = _flaky(http_peer, fail_times=1)
    run_id = worker.start(
        _fetch_then_shape(url, {"max_attempts": 2, "backoff_s": 600, "jitter": False})
    )

    worker.drain()  # the first attempt fails; the second is not due for five minutes (the cap)

    fetch = _node(worker, run_id, "fetch")
    assert (fetch["status"], fetch["attempt"], fetch["max_attempts"]) == ("retrying", 1, 2)
    assert "503" in fetch["error"]
    assert fetch["attempts"] == []  # the failed attempt is still the row's latest
    assert _time(fetch["next_attempt_at"]) > utcnow() + timedelta(seconds=250)
    assert fetch["finished_at"] is not None


def test_each_attempt_of_a_node_that_runs_out_of_attempts_is_listed_in_order(
    worker: Driver, http_peer: HttpPeer
) -> None:
    url = _flaky(http_peer, fail_times=5)
    run_id = worker.start(_fetch_then_shape(url, {"max_attempts": 3, "backoff_s": 0}))

    worker.drain()

    fetch = _node(worker, run_id, "fetch")
    assert (fetch["status"], fetch["attempt"]) == ("failed", 3)
    assert [entry["attempt"] for entry in fetch["attempts"]] == [1, 2]
    assert all("503" in entry["error"] for entry in fetch["attempts"])


def test_a_lost_workers_attempt_is_listed_when_the_node_is_claimed_again(
    worker: Driver, http_peer: HttpPeer
) -> None:
    run_id = worker.start(_fetch_then_shape(_flaky(http_peer, fail_times=0)))
    with worker.sessions.begin() as session:
        assert lease_node(session, run_id, "fetch", worker.settings) is not None
    _expire_lease(worker, run_id, "fetch")

    worker.drain()  # the message is delivered again: the claim takes the expired lease

    fetch = _node(worker, run_id, "fetch")
    assert (fetch["status"], fetch["attempt"]) == ("succeeded", 2)
    assert [(entry["attempt"], entry["error"]) for entry in fetch["attempts"]] == [(1, WORKER_LOST)]


def test_a_lease_the_sweeper_took_back_is_listed_as_a_lost_worker(
    worker: Driver, http_peer: HttpPeer
) -> None:
    run_id = worker.start(_fetch_then_shape(_flaky(http_peer, fail_times=0)))
    with worker.sessions.begin() as session:
        assert lease_node(session, run_id, "fetch", worker.settings) is not None
    _expire_lease(worker, run_id, "fetch")
    worker.queue.clear()

    with worker.sessions.begin() as session:
        worker.queue.extend(sweep(session, worker.settings))
    pending = _node(worker, run_id, "fetch")
    worker.drain()

    assert (pending["status"], pending["error"]) == ("pending", WORKER_LOST)
    fetch = _node(worker, run_id, "fetch")
    assert (fetch["status"], fetch["attempt"]) == ("succeeded", 2)
    assert [(entry["attempt"], entry["error"]) for entry in fetch["attempts"]] == [(1, WORKER_LOST)]


def test_a_resumed_node_keeps_the_attempt_that_failed_the_run(
    worker: Driver, http_peer: HttpPeer
) -> None:
    url = _flaky(http_peer, fail_times=1)
    run_id = worker.start(_fetch_then_shape(url))
    worker.drain()
    assert _node(worker, run_id, "fetch")["status"] == "failed"

    with worker.sessions.begin() as session:
        worker.queue.extend(
            retry_run(session, run_id, from_="failed", version="original").to_publish
        )
    resumed = _node(worker, run_id, "fetch")
    worker.drain()

    assert (resumed["status"], resumed["error"], resumed["attempt"]) == ("pending", None, 1)
    fetch = _node(worker, run_id, "fetch")
    assert (fetch["status"], fetch["attempt"]) == ("succeeded", 2)
    [failed] = fetch["attempts"]
    assert failed["attempt"] == 1 and "503" in failed["error"]
    assert failed["finished_at"] is not None


def test_a_control_node_parked_inline_lists_its_first_attempt(worker: Driver) -> None:
    definition = {
        "workflow_id": f"history-{uuid.uuid4().hex[:8]}",
        "nodes": [
            {"id": "first", "type": "transform", "params": {"values": {"v": 1}}, "next": "then"},
            {
                "id": "then",
                "type": "transform",
                "params": {"values": {"v": 2}},
                "retry": {"max_attempts": 2, "backoff_s": 0},
            },
        ],
    }
    run_id = worker.start(definition)
    worker.queue.clear()
    with worker.sessions.begin() as session:
        lease = lease_node(session, run_id, "first", worker.settings)
    assert lease is not None

    def times_out(_: Lease) -> Outcome:  # the inline run of `then`, as a slow template ends
        return Outcome(succeeded=False, error="timed out after 0.2s", retryable=True)

    # The completion of `first` runs `then` inline (the one-statement writer on PostgreSQL):
    # it is parked for its second attempt, which a worker then claims and runs for real.
    completion = complete_with_retry(
        worker.sessions, lease, Outcome(True, {"v": 1}), worker.settings, times_out
    )
    parked = _node(worker, run_id, "then")
    worker.queue.extend(completion.to_publish)
    worker.drain()

    assert (parked["status"], parked["attempt"], parked["attempts"]) == ("retrying", 1, [])
    then = _node(worker, run_id, "then")
    assert (then["status"], then["attempt"], then["output"]) == ("succeeded", 2, {"v": 2})
    [first] = then["attempts"]
    assert (first["attempt"], first["error"]) == (1, "timed out after 0.2s")
    assert _time(first["started_at"]) <= _time(first["finished_at"])


def test_a_node_that_succeeds_at_once_writes_no_history(worker: Driver) -> None:
    definition = {
        "workflow_id": f"history-{uuid.uuid4().hex[:8]}",
        "nodes": [{"id": "only", "type": "transform", "params": {"values": {"v": 1}}}],
    }
    run_id = worker.start(definition)

    worker.drain()

    with worker.sessions() as session:
        stored = session.get(NodeRun, (uuid.UUID(run_id), "only"))
        assert stored is not None
        assert (stored.status, stored.attempts) == ("succeeded", None)


def _expire_lease(worker: Driver, run_id: str, node_id: str) -> None:
    """The worker holding the node is gone: its lease ran out a minute ago."""
    with worker.sessions.begin() as session:
        session.execute(
            update(NodeRun)
            .where(NodeRun.run_id == uuid.UUID(run_id), NodeRun.node_id == node_id)
            .values(lease_expires_at=utcnow() - timedelta(minutes=1))
        )
