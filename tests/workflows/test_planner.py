"""The one planner of a node's completion (app/workflows/planner.py), tested as the pure function
it is: node states and an outcome in, rows, messages and the run's end out. No database.

The cases are those the two writers it replaced covered (tests/workflows/test_execution.py,
test_one_statement_postgres.py; the routing rules themselves: tests/engine/test_routing.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.engine.routing import NodeState
from app.engine.schema import WorkflowDefinition
from app.safe_http import make_http_client
from app.workflows.invoke import invoke_driver
from app.workflows.planner import Lease, Outcome, Plan, plan_completion
from app.workflows.runs import NodeRef

SETTINGS = Settings(DATABASE_URL="sqlite://", DUALMCP_VISIBILITY_TIMEOUT=3600)
RUN_ID = str(uuid.UUID(int=1))
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """Control nodes make no request; the client is there because invoke_driver takes one."""
    with make_http_client(SETTINGS) as client:
        yield client


class ControlNodes:
    """Runs control nodes with the real drivers (invoke_driver), counting each run."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.ran: list[str] = []
        self.leases: list[Lease] = []

    def __call__(self, lease: Lease) -> Outcome:
        self.ran.append(lease.node_id)
        self.leases.append(lease)
        return invoke_driver(lease, SETTINGS, self.http)


@pytest.fixture
def control(http: httpx.Client) -> ControlNodes:
    return ControlNodes(http)


class Clock:
    """A clock that moves one millisecond each time it is read."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def _definition(*nodes: dict[str, Any]) -> WorkflowDefinition:
    return WorkflowDefinition.model_validate({"workflow_id": "wf", "nodes": list(nodes)})


def _fetch(node_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "http_request", "params": {"url": "http://x.test"}, **fields}


def _transform(node_id: str, values: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "transform", "params": {"values": values}, **fields}


def _conditional(node_id: str, condition: str, **fields: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "conditional", "params": {"condition": condition}, **fields}


# call -> set -> check -(then)-> big
#                      -(else)-> small
CHAIN = _definition(
    _fetch("call", next="set"),
    _transform("set", {"n": "{{ nodes.call.n }}"}, next="check"),
    _conditional("check", "nodes.set.n >= 10", then="big", **{"else": "small"}),
    _transform("big", {"size": "big"}),
    _transform("small", {"size": "small"}),
)


def _lease(
    definition: WorkflowDefinition,
    node_id: str,
    states: dict[str, NodeState] | None = None,
    **fields: Any,
) -> Lease:
    return Lease(
        run_id=RUN_ID,
        node_id=node_id,
        attempt=fields.pop("attempt", 1),
        redeliveries=fields.pop("redeliveries", 0),
        workflow_id=definition.workflow_id,
        definition=definition,
        run_input={},
        states=states if states is not None else {node_id: NodeState("running")},
        **fields,
    )


def _plan(lease: Lease, outcome: Outcome, **options: Any) -> Plan:
    options.setdefault("clock", Clock())
    options.setdefault("rand", lambda: 0.5)
    return plan_completion(lease, outcome, lease.states, SETTINGS, **options)


def _rows(plan: Plan) -> dict[str, tuple[str, int]]:
    return {row["node_id"]: (row["status"], row["attempt"]) for row in plan.rows}


# Routing a success


def test_a_chain_of_control_nodes_runs_inline_and_closes_the_run(control: ControlNodes) -> None:
    plan = _plan(_lease(CHAIN, "call"), Outcome(True, {"n": 12}), run_control_node=control)

    assert (plan.node.status, plan.node.output) == ("succeeded", {"n": 12})
    assert control.ran == ["set", "check", "big"]
    assert _rows(plan) == {
        "set": ("succeeded", 1),
        "check": ("succeeded", 1),
        "big": ("succeeded", 1),
        "small": ("skipped", 0),
    }
    outputs = {row["node_id"]: row["output"] for row in plan.rows}
    assert outputs["check"] == {"result": True, "branch": "then"}
    assert outputs["big"] == {"size": "big"} and outputs["small"] is None
    ran = [row for row in plan.rows if row["status"] == "succeeded"]
    assert len(ran) == 3 and all(row["started_at"] < row["finished_at"] for row in ran)
    assert plan.to_publish == []
    assert plan.run_status == "succeeded" and plan.run_finished_at is not None


def test_a_control_node_sees_the_outputs_of_the_nodes_before_it(control: ControlNodes) -> None:
    _plan(_lease(CHAIN, "call"), Outcome(True, {"n": 3}), run_control_node=control)

    check = control.leases[1]
    assert check.node_id == "check" and check.attempt == 1
    assert check.outputs == {"call": {"n": 3}, "set": {"n": 3}}


def test_a_driver_successor_is_written_pending_and_published() -> None:
    definition = _definition(_fetch("a", next="b"), _fetch("b"))

    plan = _plan(_lease(definition, "a"), Outcome(True, {}))

    assert _rows(plan) == {"b": ("pending", 0)}
    assert plan.to_publish == [NodeRef(RUN_ID, "b")]
    assert plan.run_status is None


def test_without_a_control_node_runner_control_successors_are_published() -> None:
    plan = _plan(_lease(CHAIN, "call"), Outcome(True, {"n": 1}))

    assert _rows(plan) == {"set": ("pending", 0)}
    assert plan.to_publish == [NodeRef(RUN_ID, "set")]


def test_fan_out_publishes_every_successor() -> None:
    definition = _definition(_fetch("a", next=["b", "c"]), _fetch("b"), _fetch("c"))

    plan = _plan(_lease(definition, "a"), Outcome(True, {}))

    assert plan.to_publish == [NodeRef(RUN_ID, "b"), NodeRef(RUN_ID, "c")]


def test_a_join_waits_for_its_other_branch() -> None:
    definition = _definition(
        _fetch("a", next=["b", "c"]), _fetch("b", next="d"), _fetch("c", next="d"), _fetch("d")
    )
    states = {"a": NodeState("succeeded"), "b": NodeState("running"), "c": NodeState("pending")}

    plan = _plan(_lease(definition, "b", states), Outcome(True, {}))

    assert plan.rows == [] and plan.to_publish == [] and plan.run_status is None


def test_the_untaken_branch_is_skipped_and_the_join_runs_once(control: ControlNodes) -> None:
    definition = _definition(
        _conditional("check", "trigger.score >= 80", then="hot", **{"else": "cold"}),
        _transform("hot", {"tier": "hot"}, next="join"),
        _transform("cold", {"tier": "cold"}, next="join"),
        _transform("join", {"tier": "{{ (nodes.hot or nodes.cold).tier }}"}),
    )
    lease = _lease(definition, "check")

    plan = _plan(lease, Outcome(True, {"result": True, "branch": "then"}), run_control_node=control)

    assert control.ran == ["hot", "join"]
    assert _rows(plan) == {
        "cold": ("skipped", 0),
        "hot": ("succeeded", 1),
        "join": ("succeeded", 1),
    }
    assert [row["output"] for row in plan.rows if row["node_id"] == "join"] == [{"tier": "hot"}]
    assert plan.run_status == "succeeded"


def test_a_failed_node_with_on_error_continue_lets_the_run_go_on() -> None:
    definition = _definition(_fetch("a", next="b", on_error="continue"), _fetch("b"))

    plan = _plan(_lease(definition, "a"), Outcome(False, error="boom"))

    assert (plan.node.status, plan.node.error) == ("failed", "boom")
    assert plan.to_publish == [NodeRef(RUN_ID, "b")] and plan.run_status is None


# Failing


def test_a_failed_node_fails_the_run_naming_it() -> None:
    definition = _definition(_fetch("a", next="b"), _fetch("b"))

    plan = _plan(_lease(definition, "a"), Outcome(False, error="503 from x.test"))

    assert plan.node.status == "failed" and plan.rows == [] and plan.to_publish == []
    assert plan.run_status == "failed"
    assert plan.run_error == "node 'a' failed: 503 from x.test"


def test_a_failing_control_node_runs_once_and_fails_the_run(control: ControlNodes) -> None:
    definition = _definition(
        _fetch("call", next="check"),
        _conditional("check", "nodes.call.n.missing.deeper >= 1", then="yes"),
        _transform("yes", {}),
    )

    plan = _plan(_lease(definition, "call"), Outcome(True, {"n": 1}), run_control_node=control)

    assert control.ran == ["check"]  # once: not again by another writer
    [check] = plan.rows
    assert (check["status"], check["attempt"]) == ("failed", 1)
    assert check["error"] and check["finished_at"] is not None
    assert plan.run_status == "failed"
    assert plan.run_error == f"node 'check' failed: {check['error']}"
    assert plan.to_publish == []


def test_what_a_failing_run_made_pending_is_cancelled_and_not_published(
    control: ControlNodes,
) -> None:
    definition = _definition(
        _fetch("a", next=["bad", "later"]),
        _conditional("bad", "nodes.a.n.missing.deeper >= 1", then="x"),
        _fetch("later"),
        _transform("x", {}),
    )

    plan = _plan(_lease(definition, "a"), Outcome(True, {"n": 1}), run_control_node=control)

    assert _rows(plan) == {"bad": ("failed", 1), "later": ("cancelled", 0)}
    assert plan.to_publish == [] and plan.run_status == "failed"


def test_a_failed_node_of_another_branch_is_named_for_the_writer_to_read() -> None:
    definition = _definition(_fetch("a", next=["b", "c"]), _fetch("b"), _fetch("c"))
    states = {"a": NodeState("succeeded"), "b": NodeState("running"), "c": NodeState("cancelled")}

    plan = _plan(_lease(definition, "b", states), Outcome(True, {}))

    assert plan.run_status == "failed"
    assert (plan.run_error, plan.failed_node) == (None, "c")


# Retrying


def _retrying(**retry: Any) -> WorkflowDefinition:
    return _definition(_fetch("a", retry=retry, next="b"), _fetch("b"))


def test_a_retryable_failure_waits_its_backoff_with_a_countdown_message() -> None:
    definition = _retrying(max_attempts=3, backoff_s=2, jitter=False)
    clock = Clock()

    plan = _plan(
        _lease(definition, "a", attempt=2), Outcome(False, error="503", retryable=True), clock=clock
    )

    end = plan.node
    assert (end.status, end.error) == ("retrying", "503")
    assert end.next_attempt_at == end.at + timedelta(seconds=4)  # 2 s, doubled after attempt 2
    assert end.published_at == end.at
    assert plan.to_publish == [NodeRef(RUN_ID, "a", countdown=4.0)]
    assert plan.rows == [] and plan.run_status is None


def test_a_long_wait_is_left_to_the_sweeper() -> None:
    definition = _retrying(max_attempts=3, backoff_s=600, jitter=False)

    plan = _plan(_lease(definition, "a"), Outcome(False, error="503", retryable=True))

    assert plan.node.status == "retrying" and plan.node.published_at is None
    assert plan.to_publish == []


def test_the_last_attempt_fails_the_run() -> None:
    definition = _retrying(max_attempts=3, backoff_s=0)

    plan = _plan(_lease(definition, "a", attempt=3), Outcome(False, error="503", retryable=True))

    assert plan.node.status == "failed" and plan.run_status == "failed"


def test_a_resumed_node_counts_its_attempts_from_the_resume() -> None:
    definition = _retrying(max_attempts=3, backoff_s=1, jitter=False)
    lease = _lease(definition, "a", attempt=4, prior_attempts=3)

    plan = _plan(lease, Outcome(False, error="503", retryable=True))

    assert plan.node.status == "retrying"  # the first of three attempts since the resume
    assert plan.node.next_attempt_at == plan.node.at + timedelta(seconds=1)  # not 2**3 s


def test_attempts_of_a_lost_worker_are_not_counted() -> None:
    definition = _retrying(max_attempts=2, backoff_s=0)
    lease = _lease(definition, "a", attempt=3, redeliveries=2)

    plan = _plan(lease, Outcome(False, error="503", retryable=True))

    assert plan.node.status == "retrying"


def test_a_permanent_failure_is_not_retried() -> None:
    definition = _retrying(max_attempts=3, backoff_s=0)

    plan = _plan(_lease(definition, "a"), Outcome(False, error="404", retryable=False))

    assert plan.node.status == "failed"


def test_a_control_node_that_times_out_is_parked_under_its_own_policy() -> None:
    definition = _definition(
        _fetch("a", next="t"),
        _transform("t", {"x": 1}, retry={"max_attempts": 2, "backoff_s": 3, "jitter": False}),
    )

    def timing_out(lease: Lease) -> Outcome:
        return Outcome(False, error="timed out after 1s", retryable=True)

    plan = _plan(_lease(definition, "a"), Outcome(True, {}), run_control_node=timing_out)

    [row] = plan.rows
    assert (row["status"], row["attempt"], row["error"]) == ("retrying", 1, "timed out after 1s")
    assert row["next_attempt_at"] == row["published_at"] + timedelta(seconds=3)
    # The parked attempt's end: the claim of the next one moves it to the node's `attempts`.
    assert row["started_at"] is not None and row["finished_at"] >= row["started_at"]
    assert plan.to_publish == [NodeRef(RUN_ID, "t", countdown=3.0)]
    assert plan.run_status is None


# A run that is over


def test_in_a_run_no_longer_active_only_the_node_s_end_is_written(control: ControlNodes) -> None:
    definition = _retrying(max_attempts=3, backoff_s=0)

    finished = _plan(_lease(CHAIN, "call"), Outcome(True, {"n": 1}), run_active=False)
    failed = _plan(
        _lease(definition, "a"), Outcome(False, error="503", retryable=True), run_active=False
    )

    assert finished.node.status == "succeeded" and finished.rows == [] and control.ran == []
    assert finished.to_publish == [] and finished.run_status is None
    assert failed.node.status == "failed" and failed.run_status is None  # not parked


def test_routing_needs_the_states() -> None:
    lease = _lease(CHAIN, "call")
    with pytest.raises(ValueError):
        plan_completion(lease, Outcome(True, {}), None, SETTINGS)
