"""The sweeper (DESIGN.md: Execution 3): pending node_runs are the outbox, and this drains it.

It republishes pending or due node_runs whose message was not picked up in time, returns
running node_runs whose lease expired to pending, and fails a node whose worker was lost
`max_redeliveries` times (instead of Celery's endless requeue, celery#9082).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.config import Settings
from app.models import utcnow
from app.workflows import node_runs
from app.workflows.execution import Lease, Outcome, complete_node
from app.workflows.runs import NodeRef
from app.workflows.store import get_definition


@dataclass
class SweepResult:
    """One pass: what to publish after the commit, and what happened (for metrics)."""

    to_publish: list[NodeRef] = field(default_factory=list)
    #: Running nodes whose lease expired (their worker was lost), returned to pending.
    lease_expired: int = 0
    #: Pending nodes whose message was not picked up in time, and retries that came due.
    not_picked_up: int = 0
    #: Nodes failed because their worker was lost too often.
    worker_lost: int = 0
    #: (terminal status, workflow id) of the runs those failures closed.
    finished: list[tuple[str, str]] = field(default_factory=list)


def sweep(session: Session, settings: Settings) -> list[NodeRef]:
    """One pass; the caller commits, then publishes what is returned."""
    return sweep_once(session, settings).to_publish


def sweep_once(session: Session, settings: Settings) -> SweepResult:
    """One pass, with its counts; the caller commits, then publishes `to_publish`."""
    now = utcnow()
    result = _fail_exhausted_leases(session, settings, now)
    expired = node_runs.expire_leases(session, now, settings.max_redeliveries)
    stale = now - timedelta(seconds=settings.pending_republish_s)
    due = node_runs.republish_due(session, now, stale)
    result.to_publish += [
        NodeRef(str(run_id), node_id, node_type=node_type)
        for run_id, node_id, node_type in [*expired, *due]
    ]
    result.lease_expired, result.not_picked_up = len(expired), len(due)
    return result


def _fail_exhausted_leases(session: Session, settings: Settings, now: datetime) -> SweepResult:
    rows = node_runs.exhausted_leases(session, now, settings.max_redeliveries)
    result = SweepResult(worker_lost=len(rows))
    for row in rows:
        lease = Lease(
            run_id=str(row.run_id),
            node_id=row.node_id,
            attempt=row.attempt,
            redeliveries=row.redeliveries,
            workflow_id=row.workflow_id,
            definition=get_definition(session, row.workflow_id, row.workflow_version),
            run_input=row.input,
            prior_attempts=row.prior_attempts,
        )
        lost = Outcome(succeeded=False, error=f"worker lost {row.redeliveries + 1} times")
        completion = complete_node(session, lease, lost, settings)
        result.to_publish += completion.to_publish
        if completion.finished:
            result.finished.append((completion.finished, lease.workflow_id))
    return result
