"""Committing a node's outcome, with the control nodes it leads to (DESIGN.md Execution 2, 7).

Two ways to the same rows. In general (`complete_node`, app/workflows/execution.py) the
completion is a transaction: the fenced finish, the successors, each control node claimed and
completed in turn, then COMMIT. On PostgreSQL, for a run without fan-out whose chain succeeds,
the chain is planned in memory first (control nodes are pure) and written as ONE statement on
an autocommit connection: one round trip and one durable commit for the node and every control
node after it, each still its own node_run with its output and times. Anything else (a failure,
a retry, fan-out, SQLite) takes the general way.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.engine import routing
from app.engine.schema import WorkflowDefinition
from app.models import each_statement_commits, is_postgresql, utcnow
from app.workflows import statements as sql
from app.workflows.execution import (
    Completion,
    Lease,
    Outcome,
    complete_node,
    is_control_node,
    succeeded_outputs,
)
from app.workflows.runs import NodeRef

#: Seconds a node's completion keeps trying while the database is unreachable.
COMPLETION_RETRY_S = 30.0

log = logging.getLogger(__name__)

RunControlNode = Callable[[Lease], Outcome]


def complete_with_retry(
    sessions: sessionmaker[Session],
    lease: Lease,
    outcome: Outcome,
    settings: Settings,
    run_control_node: RunControlNode | None = None,
) -> Completion:
    """Commit the node's outcome, tried again while the database is unreachable.

    The driver has already run: waiting for PostgreSQL to come back beats running the driver
    again, which is what giving up means (the lease expires, the sweeper hands the node out
    anew). The completion is fenced on the attempt, so a repeat of a committed one is a no-op.

    With `run_control_node`, the control nodes this completion leases to us run before the
    same commit, each recorded as its own node_run: they are pure (no I/O), so one commit
    serves the whole chain, and if it is lost they simply run again.
    """
    planned = _plan_chain(sessions, lease, outcome, run_control_node)
    delay, give_up_at = 0.25, time.monotonic() + COMPLETION_RETRY_S
    while True:
        try:
            if planned is not None:
                return _write_chain(sessions, lease, planned)
            with sessions.begin() as session:
                completion = complete_node(session, lease, outcome, settings, claim_inline=True)
                if run_control_node is not None:
                    _complete_claimed_in(session, completion, run_control_node, settings)
                return completion
        except OperationalError:
            if time.monotonic() + delay > give_up_at:
                raise
            log.warning("database unreachable while completing a node; retrying in %gs", delay)
            time.sleep(delay)
            delay = min(delay * 2, 4.0)


def _complete_claimed_in(
    session: Session,
    completion: Completion,
    run_control_node: RunControlNode,
    settings: Settings,
) -> None:
    """Run and complete the claimed control nodes (and those they claim) in `session`."""
    claimed, completion.claimed = completion.claimed, []
    while claimed:
        control = claimed.pop(0)
        nested = complete_node(
            session, control, run_control_node(control), settings, claim_inline=True
        )
        completion.to_publish += nested.to_publish
        completion.finished = nested.finished or completion.finished
        claimed += nested.claimed


@dataclass
class PlannedChain:
    """A completion worked out in memory: the node's finish, then the rows it adds."""

    output: Any
    finished_at: datetime
    #: Rows for node_runs: control nodes run here (succeeded), successors (pending), skips.
    rows: list[dict[str, Any]] = field(default_factory=list)
    to_publish: list[NodeRef] = field(default_factory=list)
    #: When the last node of the run finished, if this chain ends the run (succeeded).
    run_finished_at: datetime | None = None


def _plan_chain(
    sessions: sessionmaker[Session],
    lease: Lease,
    outcome: Outcome,
    run_control_node: RunControlNode | None,
) -> PlannedChain | None:
    """The chain of a succeeded node, or None when the general way must write it: not on
    PostgreSQL, fan-out (completions of one run must then be serialised on the run row), no
    states from the claim, or anything but success along the chain."""
    definition = lease.definition
    if (
        not outcome.succeeded
        or run_control_node is None
        or lease.states is None
        or definition.has_fan_out
        or not is_postgresql(sessions)
    ):
        return None
    now = utcnow()
    planned = PlannedChain(output=outcome.output, finished_at=now)
    states = dict(lease.states)  # one node in flight: nothing changed since the claim
    states[lease.node_id] = routing.NodeState("succeeded", outcome.output)
    while True:
        decision = routing.advance(definition, states)
        for node_id in decision.to_skip:
            planned.rows.append(_row(definition, node_id, "skipped", finished_at=now))
            states[node_id] = routing.NodeState("skipped")
        control = [n for n in decision.to_run if is_control_node(definition, n)]
        for node_id in decision.to_run:
            if node_id not in control:
                planned.rows.append(_row(definition, node_id, "pending"))
                planned.to_publish.append(NodeRef(lease.run_id, node_id))
                states[node_id] = routing.NodeState("pending")
        if not control:
            break
        for node_id in control:
            started = utcnow()
            result = run_control_node(_control_lease(lease, node_id, states))
            if not result.succeeded:
                return None  # a failing control node: the general way records it (and retries)
            now = utcnow()
            planned.rows.append(
                _row(
                    definition,
                    node_id,
                    "succeeded",
                    attempt=1,
                    started_at=started,
                    finished_at=now,
                    output=result.output,
                )
            )
            states[node_id] = routing.NodeState("succeeded", result.output)
    finished = routing.run_outcome(definition, states)
    if finished == "failed":
        return None
    if finished == "succeeded":
        planned.run_finished_at = now
    return planned


def _control_lease(lease: Lease, node_id: str, states: dict[str, routing.NodeState]) -> Lease:
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


def _row(
    definition: WorkflowDefinition,
    node_id: str,
    status: str,
    *,
    attempt: int = 0,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    output: Any = None,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "node_id": node_id,
        "node_type": definition.node(node_id).type,
        "status": status,
        "attempt": attempt,
    }
    if started_at is not None:
        row["started_at"] = started_at.isoformat()
    if finished_at is not None:
        row["finished_at"] = finished_at.isoformat()
    if output is not None:
        row["output"] = output
    return row


def _write_chain(
    sessions: sessionmaker[Session], lease: Lease, planned: PlannedChain
) -> Completion:
    """One statement on an autocommit connection: its commit is the statement's own."""
    with each_statement_commits(sessions) as session:
        result = session.execute(
            sql.COMPLETE_IN_ONE_STATEMENT,
            {
                "p_run_id": uuid.UUID(lease.run_id),
                "p_node_id": lease.node_id,
                "p_attempt": lease.attempt,
                "p_status": "succeeded",
                "p_output": planned.output,
                "p_error": None,
                "p_now": planned.finished_at,
                "p_rows": planned.rows,
                "p_close_run": planned.run_finished_at is not None,
                "p_run_finished_at": planned.run_finished_at or planned.finished_at,
            },
        ).one()
    if not result.fenced:
        return Completion()  # the lease was taken back (sweeper); someone else owns the node
    return Completion(
        to_publish=planned.to_publish, finished="succeeded" if result.closed else None
    )
