"""The state machine in the database: leases, routing, fencing, the sweeper, cancel."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app import metrics
from app.config import Settings
from app.models import NodeRun, utcnow
from app.workflows import cancel_run, get_run
from app.workflows.execution import Completion, Outcome, complete_node, lease_node
from app.workflows.sweeper import sweep
from tests.workflows.conftest import Driver

BRANCH_AND_JOIN = {
    "workflow_id": "branch-join",
    "nodes": [
        {
            "id": "check",
            "type": "conditional",
            "params": {"condition": "trigger.score >= 80"},
            "then": "hot",
            "else": "cold",
        },
        {"id": "hot", "type": "transform", "params": {"values": {"tier": "hot"}}, "next": "join"},
        {"id": "cold", "type": "transform", "params": {"values": {"tier": "cold"}}, "next": "join"},
        {
            "id": "join",
            "type": "transform",
            "params": {"values": {"tier": "{{ (nodes.hot or nodes.cold).tier }}"}},
        },
    ],
}
ONE_NODE = {
    "workflow_id": "one",
    "nodes": [{"id": "only", "type": "transform", "params": {"values": {"n": "{{ trigger.n }}"}}}],
}


def _statuses(sessions: sessionmaker[Session], run_id: str) -> dict[str, str]:
    with sessions() as session:
        run = get_run(session, run_id)
    return {node["node_id"]: node["status"] for node in run["nodes"]} | {"@run": run["status"]}


def test_join_runs_once_after_the_taken_branch(worker: Driver, sessions: sessionmaker) -> None:
    run_id = worker.start(BRANCH_AND_JOIN, {"score": 95})
    worker.drain()

    assert _statuses(sessions, run_id) == {
        "check": "succeeded",
        "hot": "succeeded",
        "cold": "skipped",
        "join": "succeeded",
        "@run": "succeeded",
    }
    with sessions() as session:
        join = get_run(session, run_id)["nodes"][-1]
    assert join["output"] == {"tier": "hot"}
    assert join["attempt"] == 1


def test_a_single_expression_param_keeps_its_type(worker: Driver, sessions: sessionmaker) -> None:
    run_id = worker.start(ONE_NODE, {"n": 41})
    worker.drain()
    with sessions() as session:
        assert get_run(session, run_id)["nodes"][0]["output"] == {"n": 41}


def test_a_duplicate_message_is_dropped(
    sessions: sessionmaker, settings: Settings, worker: Driver
) -> None:
    run_id = worker.start(ONE_NODE, {"n": 1})
    with sessions.begin() as session:
        assert lease_node(session, run_id, "only", settings) is not None
    with sessions.begin() as session:
        assert lease_node(session, run_id, "only", settings) is None


def test_a_completion_after_the_lease_was_taken_back_is_fenced(
    sessions: sessionmaker, settings: Settings, worker: Driver
) -> None:
    run_id = worker.start(ONE_NODE, {"n": 1})
    with sessions.begin() as session:
        first = lease_node(session, run_id, "only", settings)
    _expire_leases(sessions)
    with sessions.begin() as session:
        sweep(session, settings)
    with sessions.begin() as session:
        second = lease_node(session, run_id, "only", settings)
    assert first is not None and second is not None and second.attempt == 2

    with sessions.begin() as session:
        completion = complete_node(session, first, Outcome(True, {"by": "first"}), settings)
        assert completion == Completion()  # nothing to publish, the run not closed
    with sessions.begin() as session:
        complete_node(session, second, Outcome(True, {"by": "second"}), settings)
    with sessions() as session:
        run = get_run(session, run_id)
    assert run["status"] == "succeeded"
    assert run["nodes"][0]["output"] == {"by": "second"}


def test_sweeper_fails_a_node_whose_worker_was_lost_too_often(
    sessions: sessionmaker, settings: Settings, worker: Driver
) -> None:
    run_id = worker.start(ONE_NODE, {"n": 1})
    for _ in range(settings.max_redeliveries + 1):
        with sessions.begin() as session:
            assert lease_node(session, run_id, "only", settings) is not None
        _expire_leases(sessions)
        with sessions.begin() as session:
            sweep(session, settings)

    with sessions() as session:
        run = get_run(session, run_id)
    assert run["status"] == "failed"
    assert run["error"] == "node 'only' failed: worker lost 3 times"


def test_sweeper_republishes_a_pending_node_nobody_picked_up(
    sessions: sessionmaker, settings: Settings, worker: Driver
) -> None:
    run_id = worker.start(ONE_NODE, {"n": 1})
    with sessions.begin() as session:
        assert sweep(session, settings) == []  # just published: not stale yet
    with sessions.begin() as session:
        session.execute(update(NodeRun).values(published_at=utcnow() - timedelta(minutes=5)))
    with sessions.begin() as session:
        refs = sweep(session, settings)
    assert [(ref.run_id, ref.node_id) for ref in refs] == [(run_id, "only")]
    with sessions.begin() as session:
        assert sweep(session, settings) == []  # republished just now


def test_a_cancelled_run_starts_no_further_node(
    sessions: sessionmaker, settings: Settings, worker: Driver
) -> None:
    run_id = worker.start(BRANCH_AND_JOIN, {"score": 1})
    with sessions.begin() as session:
        assert cancel_run(session, run_id) is True
    worker.drain()
    assert _statuses(sessions, run_id) == {
        "check": "cancelled",
        "hot": "not_started",
        "cold": "not_started",
        "join": "not_started",
        "@run": "cancelled",
    }
    with sessions.begin() as session:
        assert cancel_run(session, run_id) is False


def _expire_leases(sessions: sessionmaker) -> None:
    with sessions.begin() as session:
        session.execute(
            update(NodeRun)
            .where(NodeRun.status == "running")
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        assert session.scalar(select(NodeRun.status).limit(1)) == "running"


def test_payload_data_in_a_condition_is_a_value_never_an_expression(
    worker: Driver, sessions: sessionmaker
) -> None:
    definition = {
        "workflow_id": "no-injection",
        "nodes": [
            {
                "id": "check",
                "type": "conditional",
                "params": {"condition": "{{ trigger.x }}"},
                "then": "yes",
                "else": "no",
            },
            {"id": "yes", "type": "transform", "params": {"values": {}}},
            {"id": "no", "type": "transform", "params": {"values": {}}},
        ],
    }
    run_id = worker.start(definition, {"x": "1 == 2"})  # a non-empty string: truthy as a value
    worker.drain()
    with sessions() as session:
        check = get_run(session, run_id)["nodes"][0]
    assert check["output"] == {"result": True, "branch": "then"}


def test_sweeper_republishes_a_node_whose_publish_failed_at_once(
    sessions: sessionmaker, settings: Settings, worker: Driver
) -> None:
    run_id = worker.start(ONE_NODE, {"n": 1})
    with sessions.begin() as session:  # what app/tasks/dispatch.py does when the broker refuses
        session.execute(update(NodeRun).values(published_at=None))
    with sessions.begin() as session:
        refs = sweep(session, settings)
    assert [(ref.run_id, ref.node_id) for ref in refs] == [(run_id, "only")]


def _runs_of(node_type: str, outcome: str) -> float:
    """How often a node of this type ran with this outcome (GET /metrics' node durations)."""
    return sum(
        sample.value
        for family in metrics.NODE_DURATION.collect()
        for sample in family.samples
        if sample.name.endswith("_count")
        and sample.labels == {"type": node_type, "outcome": outcome}
    )


def test_a_failing_control_node_runs_once_and_fails_the_run(
    worker: Driver, sessions: sessionmaker
) -> None:
    """It runs inline in the completion of the node before it; the one plan records its
    failure (issue 14: on PostgreSQL it used to run a second time on the general path)."""
    definition = {
        "workflow_id": "failing-inline",
        "nodes": [
            {"id": "set", "type": "transform", "params": {"values": {"n": 1}}, "next": "check"},
            {
                "id": "check",
                "type": "conditional",
                "params": {"condition": "nodes.set.n.missing.deeper >= 1"},
                "then": "never",
            },
            {"id": "never", "type": "transform", "params": {"values": {}}},
        ],
    }
    before = _runs_of("conditional", "failed")
    run_id = worker.start(definition)
    worker.drain()

    assert _runs_of("conditional", "failed") - before == 1
    assert _statuses(sessions, run_id) == {
        "set": "succeeded",
        "check": "failed",
        "never": "not_started",
        "@run": "failed",
    }
    with sessions() as session:
        assert "'check' failed" in (get_run(session, run_id)["error"] or "")
