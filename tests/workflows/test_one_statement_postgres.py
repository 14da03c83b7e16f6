"""The PostgreSQL paths of a node: the claim in one statement, and a completion with the
control nodes after it written in one statement (app/workflows/completion.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.errors import Conflict
from app.models import (
    NodeRun,
    TriggerEvent,
    each_statement_commits,
    make_claims_engine,
    make_session_factory,
    utcnow,
)
from app.safe_http import make_http_client
from app.workflows import cancel_run, get_run, save_workflow
from app.workflows.completion import complete_with_retry
from app.workflows.execution import Completion, Lease, Outcome, lease_node
from app.workflows.invoke import execute_node, invoke_driver
from app.workflows.store import set_workflow_status
from app.workflows.triggers import IdempotencyKeyReused, accept_trigger
from tests.statement_log import StatementLog
from tests.workflows.conftest import Driver


@pytest.fixture
def pg_settings(migrated_postgres: str, tmp_path: Path) -> Settings:
    return Settings(
        DATABASE_URL=migrated_postgres,
        DUALMCP_HTTP_ALLOWLIST="127.0.0.1",
        DUALMCP_LEASE_GRACE_S=5,
        DUALMCP_NODE_TIMEOUT_S=60,
    )


@pytest.fixture
def claims_engine(pg_settings: Settings) -> Iterator[Engine]:
    engine = make_claims_engine(pg_settings.database_url)
    assert engine is not None
    yield engine
    engine.dispose()


@pytest.fixture
def pg_worker(
    pg_sessions: sessionmaker[Session], pg_settings: Settings, claims_engine: Engine
) -> Iterator[Driver]:
    """Claims on their own autocommit engine, as the worker's runtime has them."""
    with make_http_client(pg_settings) as http:
        yield Driver(pg_sessions, pg_settings, http, make_session_factory(claims_engine))


def _chain(workflow_id: str, url: str | None = None) -> dict[str, Any]:
    """[http_request ->] transform -> conditional -> transform | transform (no fan-out)."""
    nodes: list[dict[str, Any]] = [
        {"id": "set", "type": "transform", "params": {"values": {"n": "{{ trigger.n }}"}}},
        {
            "id": "check",
            "type": "conditional",
            "params": {"condition": "nodes.set.n >= 10"},
            "then": "big",
            "else": "small",
        },
        {"id": "big", "type": "transform", "params": {"values": {"size": "big"}}},
        {"id": "small", "type": "transform", "params": {"values": {"size": "small"}}},
    ]
    nodes[0]["next"] = "check"
    if url is not None:
        nodes.insert(0, {"id": "call", "type": "http_request", "params": {"url": url}})
        nodes[0]["next"] = "set"
    return {"workflow_id": workflow_id, "nodes": nodes}


def _complete_set(worker: Driver, lease: Lease) -> Completion:
    """Complete the chain's first node ("set") as a worker would, control nodes after it."""

    def control(claimed: Lease) -> Outcome:
        return invoke_driver(claimed, worker.settings, worker.http)

    return complete_with_retry(
        worker.sessions, lease, Outcome(True, {"n": 20}), worker.settings, run_control_node=control
    )


def _start_and_lease_set(worker: Driver, name: str) -> tuple[str, Lease]:
    """A run of the chain with its first node ("set") leased, as a worker's claim leaves it."""
    run_id = worker.start(_chain(_unique(name)), {"n": 20})
    with worker.sessions.begin() as session:
        lease = lease_node(session, run_id, "set", worker.settings)
    assert lease is not None
    return run_id, lease


def _unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_a_control_chain_is_claimed_and_written_in_two_statements(
    pg_worker: Driver, pg_sessions: sessionmaker, pg_engine: Engine, claims_engine: Engine
) -> None:
    run_id = pg_worker.start(_chain(_unique("chain")), {"n": 12})
    log = StatementLog(pg_engine, claims_engine)
    pg_worker.drain()

    # The claim (with the run's start and its node states), then the whole chain at once.
    assert log.statements == ["WITH", "WITH"]
    with pg_sessions() as session:
        run = get_run(session, run_id)
    nodes = {node["node_id"]: node for node in run["nodes"]}
    assert run["status"] == "succeeded" and run["finished_at"] is not None
    assert {node_id: node["status"] for node_id, node in nodes.items()} == {
        "set": "succeeded",
        "check": "succeeded",
        "big": "succeeded",
        "small": "skipped",
    }
    assert nodes["set"]["output"] == {"n": 12}
    assert nodes["check"]["output"] == {"result": True, "branch": "then"}
    assert nodes["big"]["output"] == {"size": "big"}
    assert all(nodes[n]["attempt"] == 1 and nodes[n]["started_at"] for n in ("check", "big"))
    assert nodes["small"]["attempt"] == 0 and nodes["small"]["output"] is None


def test_a_driver_node_publishes_its_successor_after_one_completion_statement(
    pg_worker: Driver,
    pg_sessions: sessionmaker,
    pg_engine: Engine,
    claims_engine: Engine,
    http_peer: Any,
) -> None:
    http_peer.reply("/one-statement", json={"ok": True})
    definition = _chain(_unique("driver"), f"{http_peer.url}/one-statement")
    definition["nodes"][0]["next"] = "tail"
    definition["nodes"].insert(
        1, {"id": "tail", "type": "http_request", "params": {"url": f"{http_peer.url}/tail"}}
    )
    definition["nodes"][1]["next"] = "set"
    run_id = pg_worker.start(definition, {"n": 3})
    message = pg_worker.queue.pop(0)
    log = StatementLog(pg_engine, claims_engine)

    published = execute_node(
        pg_worker.sessions, pg_worker.settings, pg_worker.http, message, claims=pg_worker.claims
    )

    assert [ref.node_id for ref in published] == ["tail"]
    assert log.statements == ["WITH", "WITH"]  # claim; finish + successor row, one commit
    with pg_sessions() as session:
        tail = session.scalar(select(NodeRun.status).where(NodeRun.node_id == "tail"))
        assert tail == "pending"
    pg_worker.queue.extend(published)
    pg_worker.drain()
    with pg_sessions() as session:
        run = get_run(session, run_id)
    assert run["status"] == "succeeded"
    assert [n["status"] for n in run["nodes"]].count("skipped") == 1


def test_a_failing_control_node_fails_the_run_in_the_same_one_statement(
    pg_worker: Driver, pg_sessions: sessionmaker, pg_engine: Engine, claims_engine: Engine
) -> None:
    definition = _chain(_unique("failing"))
    definition["nodes"][1]["params"]["condition"] = "nodes.set.n.missing.deeper >= 1"
    run_id = pg_worker.start(definition, {"n": 1})
    log = StatementLog(pg_engine, claims_engine)
    pg_worker.drain()

    assert log.statements == ["WITH", "WITH"]  # the claim; the chain and the run's failure

    with pg_sessions() as session:
        run = get_run(session, run_id)
    statuses = {node["node_id"]: node["status"] for node in run["nodes"]}
    assert run["status"] == "failed"
    assert statuses["set"] == "succeeded" and statuses["check"] == "failed"
    assert "check" in (run["error"] or "")


def test_a_completion_whose_lease_was_taken_back_writes_nothing(
    pg_worker: Driver, pg_sessions: sessionmaker
) -> None:
    run_id, lease = _start_and_lease_set(pg_worker, "fenced")
    with pg_sessions.begin() as session:  # as if the sweeper had handed it to someone else
        session.execute(
            update(NodeRun)
            .where(NodeRun.run_id == uuid.UUID(run_id), NodeRun.node_id == "set")
            .values(attempt=NodeRun.attempt + 1)
        )

    completion = _complete_set(pg_worker, lease)

    assert completion.to_publish == [] and completion.finished is None
    with pg_sessions() as session:
        rows = session.scalars(select(NodeRun.node_id).where(NodeRun.run_id == uuid.UUID(run_id)))
        assert list(rows) == ["set"]
        assert get_run(session, run_id)["status"] == "running"


def test_a_duplicate_message_claims_nothing(
    pg_worker: Driver, pg_sessions: sessionmaker, pg_settings: Settings
) -> None:
    run_id = pg_worker.start(_chain(_unique("duplicate")), {"n": 1})
    with pg_sessions.begin() as session:
        first = lease_node(session, run_id, "set", pg_settings)
        second = lease_node(session, run_id, "set", pg_settings)
        missing = lease_node(session, run_id, "no-such-node", pg_settings)
    assert first is not None and first.attempt == 1
    assert second is None and missing is None
    with pg_sessions() as session:
        assert get_run(session, run_id)["status"] == "running"


def test_a_node_with_its_own_timeout_gets_a_lease_that_long(
    pg_worker: Driver, pg_sessions: sessionmaker, pg_settings: Settings
) -> None:
    definition = _chain(_unique("timeout"))
    definition["nodes"][0]["timeout_s"] = 600
    run_id = pg_worker.start(definition, {"n": 1})
    before = utcnow()
    with pg_sessions.begin() as session:
        assert lease_node(session, run_id, "set", pg_settings) is not None
    with pg_sessions() as session:
        lease_until = session.scalar(
            select(NodeRun.lease_expires_at).where(
                NodeRun.run_id == uuid.UUID(run_id), NodeRun.node_id == "set"
            )
        )
    assert lease_until is not None
    seconds = (lease_until - before).total_seconds()
    assert 600 + 5 - 1 < seconds < 600 + 5 + 5  # the node's 600 s plus the grace, not 60 + 5


def test_a_trigger_is_recorded_by_one_statement_and_a_repeat_writes_nothing(
    pg_sessions: sessionmaker, pg_engine: Engine
) -> None:
    workflow_id = _unique("trigger")
    with pg_sessions.begin() as session:
        save_workflow(session, _chain(workflow_id))
    with each_statement_commits(pg_sessions) as session:  # reads and caches the definition
        accept_trigger(session, workflow_id, "key-0", b"{}", {})
    log = StatementLog(pg_engine)

    with each_statement_commits(pg_sessions) as session:
        first = accept_trigger(session, workflow_id, "key-1", b'{"n": 5}', {"n": 5})
    # The copy of the workflow the first trigger read is current: event + run + entry node,
    # nothing else (issue 14: every source uses the copy, not the webhook door alone).
    assert log.statements == ["WITH"]
    with each_statement_commits(pg_sessions) as session:
        again = accept_trigger(session, workflow_id, "key-1", b'{"n": 5}', {"n": 5})
        with pytest.raises(IdempotencyKeyReused):
            accept_trigger(session, workflow_id, "key-1", b'{"n": 6}', {"n": 6})

    assert not first.duplicate and [ref.node_id for ref in first.to_publish] == ["set"]
    assert first.to_publish[0].continuation is False  # an entry node: the runs queue
    assert again.duplicate and again.run_id == first.run_id and again.to_publish == []
    with pg_sessions() as session:
        run = get_run(session, first.run_id)
        events = session.scalars(
            select(TriggerEvent.run_id).where(TriggerEvent.workflow_id == workflow_id)
        ).all()
    assert run["status"] == "queued" and run["input"] == {"n": 5} and run["workflow_version"] == 1
    assert [(node["node_id"], node["status"]) for node in run["nodes"]] == [
        ("set", "pending"),
        ("check", "not_started"),
        ("big", "not_started"),
        ("small", "not_started"),
    ]
    assert uuid.UUID(first.run_id) in events and len(events) == 2  # key-0's and key-1's


def test_a_trigger_for_a_paused_workflow_records_nothing(pg_sessions: sessionmaker) -> None:
    workflow_id = _unique("paused")
    with pg_sessions.begin() as session:
        save_workflow(session, _chain(workflow_id))
        set_workflow_status(session, workflow_id, "paused")

    with each_statement_commits(pg_sessions) as session, pytest.raises(Conflict):
        accept_trigger(session, workflow_id, "key-1", b"{}", {})
    with pg_sessions() as session:
        count = session.scalar(select(func.count()).where(TriggerEvent.workflow_id == workflow_id))
    assert count == 0


def test_a_run_cancelled_while_its_node_ran_starts_nothing_after_it(
    pg_worker: Driver, pg_sessions: sessionmaker
) -> None:
    run_id, lease = _start_and_lease_set(pg_worker, "cancelled")
    with pg_sessions.begin() as session:
        assert cancel_run(session, run_id)

    completion = _complete_set(pg_worker, lease)

    assert completion.finished is None
    with pg_sessions() as session:
        run = get_run(session, run_id)
    assert run["status"] == "cancelled"
    assert [(node["node_id"], node["status"]) for node in run["nodes"]] == [
        ("set", "succeeded"),
        ("check", "not_started"),
        ("big", "not_started"),
        ("small", "not_started"),
    ]


def test_a_retry_is_parked_by_one_statement(
    pg_worker: Driver,
    pg_sessions: sessionmaker,
    pg_engine: Engine,
    claims_engine: Engine,
    http_peer: Any,
) -> None:
    route = f"/{_unique('parked')}"
    http_peer.reply(route, json={"ok": True}, fail_times=1)
    definition = _chain(_unique("parked"), f"{http_peer.url}{route}")
    definition["nodes"][0]["retry"] = {"max_attempts": 2, "backoff_s": 0}
    run_id = pg_worker.start(definition, {"n": 1})
    message = pg_worker.queue.pop(0)
    log = StatementLog(pg_engine, claims_engine)

    published = execute_node(
        pg_worker.sessions, pg_worker.settings, pg_worker.http, message, claims=pg_worker.claims
    )

    assert log.statements == ["WITH", "UPDATE"]  # the claim; the fenced park for attempt 2
    assert [ref.node_id for ref in published] == ["call"]
    pg_worker.queue.extend(published)
    pg_worker.drain()
    with pg_sessions() as session:
        run = get_run(session, run_id)
    assert run["status"] == "succeeded" and run["nodes"][0]["attempt"] == 2
