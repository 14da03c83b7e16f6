"""The database side of running a node (DESIGN.md: Execution 2-3).

`lease_node` claims a node_run; `complete_node` writes its outcome, inserts its successors and
closes the run when it is done, all in the caller's one transaction; `sweep` finds work whose
message was lost. Each returns the NodeRefs to publish AFTER the caller commits.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import drivers
from app.config import Settings
from app.engine import routing
from app.engine.schema import ACTIVE_RUN_STATUSES, WorkflowDefinition
from app.models import NodeRun, WorkflowRun, is_postgresql, utcnow
from app.workflows import statements as sql
from app.workflows.runs import NodeRef
from app.workflows.store import get_definition

log = logging.getLogger(__name__)


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

    @property
    def node(self) -> Any:
        return self.definition.node(self.node_id)

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


def node_timeout_s(definition: WorkflowDefinition, node_id: str, settings: Settings) -> float:
    return definition.node(node_id).timeout_s or settings.default_node_timeout_s


def lease_node(session: Session, run_id: str, node_id: str, settings: Settings) -> Lease | None:
    """Claim the node_run, or None when this message is a duplicate or the run is over.

    No transaction around it: the caller may run this on a connection whose commits do not
    wait for fsync. A claim lost in a crash leaves the node pending, the completion's fence then
    refuses the stale attempt, and the sweeper publishes the node again (at-least-once, as
    promised). On PostgreSQL the claim is one statement (`_lease_in_one_statement`); elsewhere
    a read of the run and its node states, then one conditional UPDATE.
    """
    if is_postgresql(session):
        return _lease_in_one_statement(session, run_id, node_id, settings)
    run_uuid = uuid.UUID(run_id)
    rows = session.execute(sql.RUN_WITH_NODE_STATES, {"p_run_id": run_uuid}).all()
    if not rows or rows[0].run_status not in ACTIVE_RUN_STATUSES:
        return None
    run = rows[0]
    definition = get_definition(session, run.workflow_id, run.workflow_version)
    if node_id not in definition.nodes_by_id:
        return None
    now = utcnow()
    claimed = session.execute(
        sql.CLAIM_NODE,
        {
            "p_run_id": run_uuid,
            "p_node_id": node_id,
            "p_now": now,
            "p_lease_until": now + _lease_s(definition, node_id, settings),
            "p_max_redeliveries": settings.max_redeliveries,
        },
    ).first()
    if claimed is None:
        return None
    if run.run_status == "queued":  # the run's first node: the run starts now
        session.execute(sql.START_RUN, {"p_run_id": run_uuid, "p_now": now})
    return _lease(run_id, node_id, claimed.attempt, claimed.redeliveries, definition, rows)


def _lease_in_one_statement(
    session: Session, run_id: str, node_id: str, settings: Settings
) -> Lease | None:
    """The claim, the run's start and the read of the run's node states in one round trip.

    The lease is taken for the default node timeout, since the node's own is in the definition,
    which the same statement names; a node with a timeout of its own pays one more UPDATE.
    """
    run_uuid = uuid.UUID(run_id)
    now = utcnow()
    default_lease = timedelta(seconds=settings.default_node_timeout_s + settings.lease_grace_s)
    rows = session.execute(
        sql.CLAIM_WITH_NODE_STATES,
        {
            "p_run_id": run_uuid,
            "p_node_id": node_id,
            "p_now": now,
            "p_lease_until": now + default_lease,
            "p_max_redeliveries": settings.max_redeliveries,
        },
    ).all()
    claimed = next((row for row in rows if row.claimed_attempt is not None), None)
    if claimed is None:
        return None
    definition = get_definition(session, claimed.workflow_id, claimed.workflow_version)
    lease_s = _lease_s(definition, node_id, settings)
    if lease_s != default_lease:
        session.execute(
            sql.SET_LEASE,
            {
                "p_run_id": run_uuid,
                "p_node_id": node_id,
                "p_attempt": claimed.claimed_attempt,
                "p_lease_until": now + lease_s,
            },
        )
    return _lease(
        run_id, node_id, claimed.claimed_attempt, claimed.claimed_redeliveries, definition, rows
    )


def _lease_s(definition: WorkflowDefinition, node_id: str, settings: Settings) -> timedelta:
    """How long a claim holds the node: its timeout plus the grace for a slow completion."""
    return timedelta(seconds=node_timeout_s(definition, node_id, settings) + settings.lease_grace_s)


def _lease(
    run_id: str,
    node_id: str,
    attempt: int,
    redeliveries: int,
    definition: WorkflowDefinition,
    rows: Sequence[Any],
) -> Lease:
    """The Lease for a claimed node, from the rows of the run and its node states."""
    states = {row.node_id: routing.NodeState(row.status, row.output) for row in rows}
    states[node_id] = routing.NodeState("running")
    return Lease(
        run_id=run_id,
        node_id=node_id,
        attempt=attempt,
        redeliveries=redeliveries,
        workflow_id=rows[0].workflow_id,
        definition=definition,
        run_input=rows[0].input,
        outputs=succeeded_outputs(states),
        states=states,
    )


def succeeded_outputs(states: dict[str, routing.NodeState]) -> dict[str, Any]:
    return {
        node_id: state.output for node_id, state in states.items() if state.status == "succeeded"
    }


@dataclass
class Completion:
    """What a finished node leads to: messages to publish after commit, and control nodes this
    worker already leased in the same transaction, to run right away (DESIGN.md Execution 7)."""

    to_publish: list[NodeRef] = field(default_factory=list)
    claimed: list[Lease] = field(default_factory=list)
    #: The run's terminal status when this completion closed it (for metrics, after commit).
    finished: str | None = None


def complete_node(
    session: Session,
    lease: Lease,
    outcome: Outcome,
    settings: Settings,
    *,
    claim_inline: bool = False,
) -> Completion:
    """Record the outcome; route successors; close the run when it is done. One transaction.

    With `claim_inline`, successors whose driver is a pure control node are inserted already
    leased to the caller instead of pending, which saves them a message and a lease round trip.
    """
    now = utcnow()
    run_uuid = uuid.UUID(lease.run_id)
    run_status = "running"
    if lease.definition.has_fan_out:
        # Parallel branches: completions of one run are serialised on the run row, so a join
        # sees every predecessor and exactly one completion closes the run. A workflow without
        # fan-out has one node in flight at a time and needs no lock.
        run_status = session.scalar(sql.LOCK_RUN, {"p_run_id": run_uuid}) or "cancelled"
    node = lease.definition.node(lease.node_id)
    failures = lease.attempt - lease.redeliveries
    retry = (
        not outcome.succeeded
        and outcome.retryable
        and routing.should_retry(node.retry, failures)
        and run_status in ACTIVE_RUN_STATUSES
    )
    completion = Completion()
    fence = {
        "p_run_id": run_uuid,
        "p_node_id": lease.node_id,
        "p_attempt": lease.attempt,
        "p_error": outcome.error,
    }
    if retry:
        delay = routing.retry_delay_s(node.retry, failures, random.random())
        # Short waits get a countdown hint; long ones are left to the sweeper, so no ETA ever
        # outlives the broker's visibility timeout.
        hinted = delay <= min(60.0, settings.visibility_timeout / 2)
        if hinted:
            completion.to_publish.append(NodeRef(lease.run_id, lease.node_id, countdown=delay))
        fenced = session.execute(
            sql.RETRY_NODE,
            fence
            | {
                "p_next_attempt_at": now + timedelta(seconds=delay),
                "p_published_at": now if hinted else None,
            },
        )
        new_status = "retrying"
    else:
        new_status = "succeeded" if outcome.succeeded else "failed"
        fenced = session.execute(
            sql.FINISH_NODE,
            fence | {"p_status": new_status, "p_output": outcome.output, "p_now": now},
        )
    if fenced.rowcount == 0:  # type: ignore[attr-defined]
        return Completion()  # the lease was taken back (sweeper); someone else owns the node
    if retry or run_status not in ACTIVE_RUN_STATUSES:
        return completion
    _route(session, lease, settings, now, completion, claim_inline, new_status, outcome.output)
    return completion


def _route(
    session: Session,
    lease: Lease,
    settings: Settings,
    now: datetime,
    completion: Completion,
    claim_inline: bool,
    new_status: str,
    output: Any,
) -> None:
    run_uuid = uuid.UUID(lease.run_id)
    definition = lease.definition
    if lease.states is not None and not definition.has_fan_out:
        states = dict(lease.states)  # one node in flight: nothing changed since the claim
        states[lease.node_id] = routing.NodeState(new_status, output)
    else:
        states = {
            row.node_id: routing.NodeState(row.status, row.output)
            for row in session.execute(sql.NODE_STATES, {"p_run_id": run_uuid})
        }
    decision = routing.advance(definition, states)
    claimed = [n for n in decision.to_run if claim_inline and is_control_node(definition, n)]
    rows = [_new_node_run(run_uuid, definition, n, "skipped", now) for n in decision.to_skip]
    rows += [_new_node_run(run_uuid, definition, n, "pending", now) for n in decision.to_run]
    for row in rows:
        if row["node_id"] in claimed:
            timeout_s = node_timeout_s(definition, row["node_id"], settings)
            row.update(
                status="running",
                attempt=1,
                started_at=now,
                lease_expires_at=now + timedelta(seconds=timeout_s + settings.lease_grace_s),
            )
        states[row["node_id"]] = routing.NodeState(row["status"])
    if rows:
        session.execute(sql.INSERT_NODE_RUNS, rows)
    finished = routing.run_outcome(definition, states)
    if finished is not None:
        if _finish_run(session, run_uuid, definition, states, finished, now):
            completion.finished = finished
        if finished == "failed":
            return
    outputs = succeeded_outputs(states)
    for node_id in decision.to_run:
        if node_id in claimed:
            completion.claimed.append(
                Lease(
                    run_id=lease.run_id,
                    node_id=node_id,
                    attempt=1,
                    redeliveries=0,
                    workflow_id=lease.workflow_id,
                    definition=definition,
                    run_input=lease.run_input,
                    outputs=outputs,
                    states=dict(states),
                )
            )
        else:
            completion.to_publish.append(NodeRef(lease.run_id, node_id))


def is_control_node(definition: WorkflowDefinition, node_id: str) -> bool:
    try:
        return drivers.get_driver(definition.node(node_id).type).inline
    except drivers.UnknownDriver:
        return False


def _new_node_run(
    run_uuid: uuid.UUID, definition: WorkflowDefinition, node_id: str, status: str, now: datetime
) -> dict[str, Any]:
    skipped = status == "skipped"
    return {
        "run_id": run_uuid,
        "node_id": node_id,
        "node_type": definition.node(node_id).type,
        "status": status,
        "attempt": 0,
        "redeliveries": 0,
        "next_attempt_at": now,
        "published_at": now,
        "finished_at": now if skipped else None,
        # Every row names the same columns: one executemany for all of them.
        "started_at": None,
        "lease_expires_at": None,
    }


def _finish_run(
    session: Session,
    run_uuid: uuid.UUID,
    definition: WorkflowDefinition,
    states: dict[str, routing.NodeState],
    status: str,
    now: datetime,
) -> bool:
    """Close the run; False when it was already closed (cancelled meanwhile)."""
    error = None
    if status == "failed":
        failed = [
            node.id
            for node in definition.nodes
            if states.get(node.id, routing.NodeState("")).status in ("failed", "cancelled")
            and node.on_error == "fail"
        ]
        error = _failure_message(session, run_uuid, failed)
        session.execute(
            update(NodeRun)
            .where(NodeRun.run_id == run_uuid, NodeRun.status.in_(("pending", "retrying")))
            .values(status="cancelled", finished_at=now)
        )
    closed = session.execute(
        update(WorkflowRun)
        .where(WorkflowRun.run_id == run_uuid, WorkflowRun.status.in_(ACTIVE_RUN_STATUSES))
        .values(status=status, finished_at=now, error=error)
    )
    return bool(closed.rowcount)  # type: ignore[attr-defined]


def _failure_message(session: Session, run_uuid: uuid.UUID, failed: list[str]) -> str:
    if not failed:
        return "run failed"
    node_id = failed[0]
    error = session.scalar(
        select(NodeRun.error).where(NodeRun.run_id == run_uuid, NodeRun.node_id == node_id)
    )
    return f"node {node_id!r} failed: {error or 'unknown error'}"
