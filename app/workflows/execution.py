"""The database side of running a node (DESIGN.md: Execution 2-3), on any database.

`lease_node` claims a node_run; `complete_node` writes its outcome, inserts its successors and
closes the run when it is done, all in the caller's one transaction, as the plan of
app/workflows/planner.py says. Each returns the NodeRefs to publish AFTER the caller commits.
On PostgreSQL the claim is one statement, and so is a completion without fan-out
(app/workflows/completion.py); this module's statement-by-statement writer serves the rest.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.config import Settings
from app.engine import routing
from app.engine.schema import ACTIVE_RUN_STATUSES, WorkflowDefinition
from app.models import is_postgresql, utcnow
from app.workflows import node_runs
from app.workflows import statements as sql
from app.workflows.planner import (
    Lease,
    Outcome,
    Plan,
    RunControlNode,
    failure_message,
    is_control_node,
    plan_completion,
    succeeded_outputs,
    will_retry,
)
from app.workflows.runs import NodeRef
from app.workflows.store import get_definition

__all__ = [
    "Completion",
    "Lease",
    "Outcome",
    "complete_node",
    "is_control_node",
    "lease_node",
    "node_timeout_s",
    "succeeded_outputs",
    "write_plan",
]

log = logging.getLogger(__name__)


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
    lease_until = now + _lease_s(definition, node_id, settings)
    claimed = node_runs.claim(
        session, run_uuid, node_id, now, lease_until, settings.max_redeliveries
    )
    if claimed is None:
        return None
    if run.run_status == "queued":  # the run's first node: the run starts now
        session.execute(sql.START_RUN, {"p_run_id": run_uuid, "p_now": now})
    return _lease(
        run_id,
        node_id,
        (claimed.attempt, claimed.redeliveries, claimed.prior_attempts),
        definition,
        rows,
    )


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
        node_runs.set_lease(session, run_uuid, node_id, claimed.claimed_attempt, now + lease_s)
    counts = (
        claimed.claimed_attempt,
        claimed.claimed_redeliveries,
        claimed.claimed_prior_attempts,
    )
    return _lease(run_id, node_id, counts, definition, rows)


def _lease_s(definition: WorkflowDefinition, node_id: str, settings: Settings) -> timedelta:
    """How long a claim holds the node: its timeout plus the grace for a slow completion."""
    return timedelta(seconds=node_timeout_s(definition, node_id, settings) + settings.lease_grace_s)


def _lease(
    run_id: str,
    node_id: str,
    counts: tuple[int, int, int],
    definition: WorkflowDefinition,
    rows: Sequence[Any],
) -> Lease:
    """The Lease for a claimed node, from its (attempt, redeliveries, prior_attempts) and the
    rows of the run and its node states."""
    states = {row.node_id: routing.NodeState(row.status, row.output) for row in rows}
    states[node_id] = routing.NodeState("running")
    attempt, redeliveries, prior_attempts = counts
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
        prior_attempts=prior_attempts,
    )


@dataclass
class Completion:
    """What a finished node leads to: messages to publish after commit."""

    to_publish: list[NodeRef] = field(default_factory=list)
    #: The run's terminal status when this completion closed it (for metrics, after commit).
    finished: str | None = None


def complete_node(
    session: Session,
    lease: Lease,
    outcome: Outcome,
    settings: Settings,
    *,
    run_control_node: RunControlNode | None = None,
) -> Completion:
    """Record the outcome; route successors; close the run when it is done. One transaction.

    With `run_control_node`, successors that are control nodes run before the commit, each
    recorded as its own node_run; without it they are written pending and published.
    """
    run_uuid = lease.run_uuid
    fan_out = lease.definition.has_fan_out
    # Parallel branches: completions of one run are serialised on the run row, so a join sees
    # every predecessor and exactly one completion closes the run. A workflow without fan-out
    # has one node in flight at a time and needs no lock.
    run_status = session.scalar(sql.LOCK_RUN if fan_out else sql.RUN_STATUS, {"p_run_id": run_uuid})
    run_active = run_status in ACTIVE_RUN_STATUSES
    states: dict[str, routing.NodeState] | None = None
    if run_active and not will_retry(lease.node, lease.failures, outcome, run_active):
        if lease.states is not None and not fan_out:
            states = lease.states  # one node in flight: nothing changed since the claim
        else:
            states = {
                row.node_id: routing.NodeState(row.status, row.output)
                for row in node_runs.states(session, run_uuid)
            }
    plan = plan_completion(
        lease,
        outcome,
        states,
        settings,
        run_active=run_active,
        run_control_node=run_control_node,
        rand=random.random,
    )
    return write_plan(session, lease, plan)


def write_plan(session: Session, lease: Lease, plan: Plan) -> Completion:
    """Write a plan statement by statement, in the caller's transaction: the node's fenced end,
    then (only if the fence held) its new rows and the run's end."""
    run_uuid, end = lease.run_uuid, plan.node
    if end.status == "retrying":
        return park_for_retry(session, lease, plan)
    else:
        fenced = node_runs.finish(
            session,
            run_uuid,
            lease.node_id,
            lease.attempt,
            end.status,
            end.output,
            end.error,
            end.at,
        )
    if not fenced:
        return Completion()  # the lease was taken back (sweeper); someone else owns the node
    node_runs.insert_rows(session, plan.rows)
    completion = Completion(to_publish=plan.to_publish)
    if plan.run_status is None:
        return completion
    error = plan.run_error
    if plan.run_status == "failed":
        if error is None and plan.failed_node is not None:
            failed = plan.failed_node
            error = failure_message(failed, node_runs.error_of(session, run_uuid, failed))
        node_runs.cancel_unfinished(session, run_uuid, end.at)
    closed = session.execute(
        sql.CLOSE_RUN,
        {
            "p_run_id": run_uuid,
            "p_run_status": plan.run_status,
            "p_run_error": error,
            "p_run_finished_at": plan.run_finished_at,
        },
    )
    if closed.rowcount:  # type: ignore[attr-defined]
        completion.finished = plan.run_status
    return completion


def park_for_retry(session: Session, lease: Lease, plan: Plan) -> Completion:
    """The node waits for its next attempt (one fenced UPDATE, the same on both databases);
    its message is published only if the fence held."""
    end = plan.node
    assert end.next_attempt_at is not None
    parked = node_runs.retry(
        session,
        lease.run_uuid,
        lease.node_id,
        lease.attempt,
        end.error,
        end.next_attempt_at,
        end.published_at,
        end.at,
    )
    return Completion(plan.to_publish) if parked == "retrying" else Completion()
