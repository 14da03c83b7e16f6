"""What a node's completion leads to, decided in memory (DESIGN.md: Execution 2, 6, 7).

One pure function, `plan_completion`: the run's node states and the node's outcome in; out come
the node's own end (finished, or parked for a retry), the node_runs to add (successors pending,
dead paths skipped, control nodes already run inline), the messages to publish after commit,
and the run's end when this completion closes it. No session and no I/O: both writers take the
same plan, PostgreSQL as one statement (app/workflows/completion.py) and any database as a few
(app/workflows/execution.py), so a rule of routing, retrying or closing lives here once.

Control nodes (conditional, transform) are pure, so they run while planning, through the
`run_control_node` the caller passes, each recorded as its own node_run; a lost commit only
means they run again.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from app import drivers
from app.config import Settings
from app.engine import routing
from app.engine.schema import NodeDefinition, WorkflowDefinition
from app.models import utcnow
from app.workflows import node_runs
from app.workflows.runs import NodeRef

#: Retry waits up to this long get a countdown message; longer ones are left to the sweeper,
#: so no ETA outlives the broker's visibility timeout (DESIGN.md: Execution 3).
MAX_HINTED_RETRY_S = 60.0


@dataclass
class Lease:
    """A claimed node_run and what its driver needs; `attempt` fences the completion."""

    run_id: str
    node_id: str
    attempt: int
    redeliveries: int
    workflow_id: str
    definition: WorkflowDefinition
    run_input: Any
    outputs: dict[str, Any] = field(default_factory=dict)
    #: Every node's state as of the claim; None when unknown (then read again on completion).
    #: Enough for routing a workflow without fan-out, where one node is in flight at a time.
    states: dict[str, routing.NodeState] | None = None
    #: Attempts made before the run was resumed from this node (app/workflows/retry.py).
    prior_attempts: int = 0
    _run_uuid: uuid.UUID | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def node(self) -> NodeDefinition:
        return self.definition.node(self.node_id)

    @property
    def run_uuid(self) -> uuid.UUID:
        """`run_id` parsed, once (functools.cached_property takes a lock on Python 3.11)."""
        if self._run_uuid is None:
            self._run_uuid = uuid.UUID(self.run_id)
        return self._run_uuid

    @property
    def failures(self) -> int:
        """The attempts the retry policy counts: those since the resume, lost workers aside."""
        return self.attempt - self.prior_attempts - self.redeliveries

    def template_context(self) -> dict[str, Any]:
        """What templates see (DESIGN.md: trigger, nodes, run, agent); never secrets."""
        return {
            "trigger": self.run_input,
            "nodes": self.outputs,
            "run": {"id": self.run_id, "workflow_id": self.workflow_id, "attempt": self.attempt},
            "agent": {"id": self.definition.agent_id},
        }


@dataclass(frozen=True)
class Outcome:
    """What happened when the driver ran."""

    succeeded: bool
    output: Any = None
    error: str | None = None
    #: A failure worth another attempt under the node's retry policy.
    retryable: bool = False


RunControlNode = Callable[[Lease], Outcome]


@dataclass
class NodeEnd:
    """How the completed node's row changes: finished, or parked for another attempt."""

    status: Literal["succeeded", "failed", "retrying"]
    output: Any
    error: str | None
    at: datetime
    #: retrying: when the next attempt is due, and whether a countdown message announces it
    #: (`published_at` now) or the sweeper sends it when due (None).
    next_attempt_at: datetime | None = None
    published_at: datetime | None = None


@dataclass
class Plan:
    """A completion worked out in memory, for a writer to commit."""

    node: NodeEnd
    #: New node_runs (node_runs.new_row): control nodes run inline, successors, dead paths.
    rows: list[dict[str, Any]] = field(default_factory=list)
    to_publish: list[NodeRef] = field(default_factory=list)
    #: The run's end, when this completion closes it.
    run_status: Literal["succeeded", "failed"] | None = None
    run_finished_at: datetime | None = None
    #: The failed run's error, when the plan knows the error of the node that failed it;
    #: otherwise `failed_node` names that node, for the writer to read its error.
    run_error: str | None = None
    failed_node: str | None = None


def will_retry(node: NodeDefinition, failures: int, outcome: Outcome, run_active: bool) -> bool:
    """A retryable failure the node's policy allows another attempt for, in an active run."""
    return (
        not outcome.succeeded
        and outcome.retryable
        and routing.should_retry(node.retry, failures)
        and run_active
    )


def plan_completion(
    lease: Lease,
    outcome: Outcome,
    states: Mapping[str, routing.NodeState] | None,
    settings: Settings,
    *,
    run_active: bool = True,
    run_control_node: RunControlNode | None = None,
    clock: Callable[[], datetime] = utcnow,
    rand: Callable[[], float] = random.random,
) -> Plan:
    """The plan for `lease`'s node ending with `outcome`, given every node's state.

    `states` may be None only when no routing follows (a retry, or a run no longer active).
    Successors that are control nodes run here through `run_control_node` when it is given
    (and are otherwise written pending, to be published like any node).
    """
    now = clock()
    definition = lease.definition
    if will_retry(lease.node, lease.failures, outcome, run_active):
        end, hint = _parked(lease.run_id, lease.node, lease.failures, outcome, settings, now, rand)
        return Plan(node=end, to_publish=hint)
    status: Literal["succeeded", "failed"] = "succeeded" if outcome.succeeded else "failed"
    plan = Plan(node=NodeEnd(status, outcome.output, outcome.error, now))
    if not run_active:
        return plan  # a run cancelled while its node ran: the node's end is kept, nothing more
    if states is None:
        raise ValueError("routing a completion needs the run's node states")
    known = dict(states)
    known[lease.node_id] = routing.NodeState(status, outcome.output)
    errors = {lease.node_id: outcome.error}

    def row(node_id: str, status: str, **values: Any) -> None:
        node_type = definition.node(node_id).type
        plan.rows.append(
            node_runs.new_row(lease.run_uuid, node_id, node_type, status, now, **values)
        )

    while True:
        decision = routing.advance(definition, known)
        for node_id in decision.to_skip:
            row(node_id, "skipped", finished_at=now)
            known[node_id] = routing.NodeState("skipped")
        inline = [
            n
            for n in decision.to_run
            if run_control_node is not None and is_control_node(definition, n)
        ]
        for node_id in decision.to_run:
            if node_id not in inline:
                row(node_id, "pending")
                plan.to_publish.append(
                    NodeRef(lease.run_id, node_id, node_type=definition.node(node_id).type)
                )
                known[node_id] = routing.NodeState("pending")
        if not inline:
            break
        assert run_control_node is not None
        for node_id in inline:
            started = clock()
            result = run_control_node(_control_lease(lease, node_id, known))
            now = clock()
            node = definition.node(node_id)
            if will_retry(node, 1, result, run_active=True):
                end, hint = _parked(lease.run_id, node, 1, result, settings, now, rand)
                row(
                    node_id,
                    "retrying",
                    attempt=1,
                    started_at=started,
                    error=result.error,
                    next_attempt_at=end.next_attempt_at,
                    published_at=end.published_at,
                )
                plan.to_publish += hint
                known[node_id] = routing.NodeState("retrying")
                continue
            ended = "succeeded" if result.succeeded else "failed"
            row(
                node_id,
                ended,
                attempt=1,
                started_at=started,
                finished_at=now,
                output=result.output,
                error=result.error,
            )
            known[node_id] = routing.NodeState(ended, result.output)
            errors[node_id] = result.error
    plan.run_status = routing.run_outcome(definition, known)
    if plan.run_status is not None:
        plan.run_finished_at = now
    if plan.run_status == "failed":
        _fail_run(plan, definition, known, errors, now)
    return plan


def _parked(
    run_id: str,
    node: NodeDefinition,
    failures: int,
    outcome: Outcome,
    settings: Settings,
    now: datetime,
    rand: Callable[[], float],
) -> tuple[NodeEnd, list[NodeRef]]:
    """The node's end as `retrying`, and the countdown message when the wait is short."""
    delay = routing.retry_delay_s(node.retry, failures, rand())
    hinted = delay <= min(MAX_HINTED_RETRY_S, settings.visibility_timeout / 2)
    end = NodeEnd(
        "retrying",
        None,
        outcome.error,
        now,
        next_attempt_at=now + timedelta(seconds=delay),
        published_at=now if hinted else None,
    )
    return end, [NodeRef(run_id, node.id, countdown=delay, node_type=node.type)] if hinted else []


def _fail_run(
    plan: Plan,
    definition: WorkflowDefinition,
    known: Mapping[str, routing.NodeState],
    errors: Mapping[str, str | None],
    now: datetime,
) -> None:
    """A failed run starts nothing more: what this plan made pending is cancelled (the writer
    cancels the run's other waiting rows), and the run's error names the first failed node."""
    for new in plan.rows:
        if new["status"] in ("pending", "retrying"):
            new.update(status="cancelled", finished_at=now)
    plan.to_publish = []
    failed = [
        node.id
        for node in definition.nodes
        if known.get(node.id, routing.NodeState("")).status in ("failed", "cancelled")
        and node.on_error == "fail"
    ]
    if not failed:
        plan.run_error = "run failed"
    elif failed[0] in errors:
        plan.run_error = failure_message(failed[0], errors[failed[0]])
    else:
        plan.failed_node = failed[0]


def failure_message(node_id: str, error: str | None) -> str:
    return f"node {node_id!r} failed: {error or 'unknown error'}"


def _control_lease(lease: Lease, node_id: str, states: Mapping[str, routing.NodeState]) -> Lease:
    """The lease a control node would hold had its row been claimed: its first attempt."""
    return Lease(
        run_id=lease.run_id,
        node_id=node_id,
        attempt=1,
        redeliveries=0,
        workflow_id=lease.workflow_id,
        definition=lease.definition,
        run_input=lease.run_input,
        outputs=succeeded_outputs(states),
        states=dict(states),
    )


def is_control_node(definition: WorkflowDefinition, node_id: str) -> bool:
    """A node whose driver is pure (conditional, transform): run inline by the completion
    before it (DESIGN.md Execution 7)."""
    try:
        return drivers.get_driver(definition.node(node_id).type).inline
    except drivers.UnknownDriver:
        return False


def succeeded_outputs(states: Mapping[str, routing.NodeState]) -> dict[str, Any]:
    return {
        node_id: state.output for node_id, state in states.items() if state.status == "succeeded"
    }
