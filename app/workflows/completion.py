"""Committing a node's outcome, with the control nodes it leads to (DESIGN.md Execution 2, 7).

One plan (app/workflows/planner.py), two writers. On PostgreSQL, for a run without fan-out,
the plan is made in memory from the states the claim read (control nodes are pure, so they
run while planning) and written as ONE statement on an autocommit connection: one round trip
and one durable commit for the node and every control node after it, each still its own
node_run with its output and times; a retry is one fenced UPDATE. Anywhere else (fan-out, whose
completions are serialised on the run row; SQLite) `complete_node` plans and writes inside a
transaction, statement by statement (app/workflows/execution.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.engine.schema import ACTIVE_RUN_STATUSES
from app.models import each_statement_commits, is_postgresql
from app.workflows import statements as sql
from app.workflows.execution import Completion, complete_node, park_for_retry, write_plan
from app.workflows.planner import Lease, Outcome, Plan, RunControlNode, plan_completion

#: Seconds a node's completion keeps trying while the database is unreachable.
COMPLETION_RETRY_S = 30.0

log = logging.getLogger(__name__)


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

    With `run_control_node`, the control nodes this completion leads to run before the same
    commit, each recorded as its own node_run: they are pure (no I/O), so one commit serves
    the whole chain, and if it is lost they simply run again.
    """
    plan = None
    if lease.states is not None and not lease.definition.has_fan_out and is_postgresql(sessions):
        # One node in flight: the claim's states are the run's; the statement checks the run
        # is still active, so the plan may assume it.
        plan = plan_completion(
            lease, outcome, lease.states, settings, run_control_node=run_control_node
        )
    delay, give_up_at = 0.25, time.monotonic() + COMPLETION_RETRY_S
    while True:
        try:
            if plan is not None:
                return _write_in_one_statement(sessions, lease, plan)
            with sessions.begin() as session:
                return complete_node(
                    session, lease, outcome, settings, run_control_node=run_control_node
                )
        except OperationalError:
            if time.monotonic() + delay > give_up_at:
                raise
            log.warning("database unreachable while completing a node; retrying in %gs", delay)
            time.sleep(delay)
            delay = min(delay * 2, 4.0)


def _write_in_one_statement(
    sessions: sessionmaker[Session], lease: Lease, plan: Plan
) -> Completion:
    """One statement on an autocommit connection: its commit is the statement's own."""
    run_uuid, end = lease.run_uuid, plan.node
    if plan.run_status == "failed" and plan.run_error is None:
        return _write_in_a_transaction(sessions, lease, plan)  # the error must be read first
    with each_statement_commits(sessions) as session:
        if end.status == "retrying":
            return park_for_retry(session, lease, plan)
        statement = (
            sql.FAIL_IN_ONE_STATEMENT
            if plan.run_status == "failed"
            else sql.COMPLETE_IN_ONE_STATEMENT
        )
        result = session.execute(
            statement,
            {
                "p_run_id": run_uuid,
                "p_node_id": lease.node_id,
                "p_attempt": lease.attempt,
                "p_status": end.status,
                "p_output": end.output,
                "p_error": end.error,
                "p_now": end.at,
                "p_rows": [_as_json(row) for row in plan.rows],
                "p_close_run": plan.run_status is not None,
                "p_run_status": plan.run_status,
                "p_run_error": plan.run_error,
                "p_run_finished_at": plan.run_finished_at,
            },
        ).one()
    if not result.fenced:
        return Completion()  # the lease was taken back (sweeper); someone else owns the node
    return Completion(
        to_publish=plan.to_publish, finished=plan.run_status if result.closed else None
    )


def _write_in_a_transaction(
    sessions: sessionmaker[Session], lease: Lease, plan: Plan
) -> Completion:
    """A plan made without knowing the run is still active, written statement by statement:
    the node's end is kept either way, the rest only while the run is active."""
    with sessions.begin() as session:
        status = session.scalar(sql.LOCK_RUN, {"p_run_id": lease.run_uuid})
        if status not in ACTIVE_RUN_STATUSES:
            plan = Plan(node=plan.node)
        return write_plan(session, lease, plan)


def _as_json(row: dict[str, Any]) -> dict[str, Any]:
    """A new row (node_runs.new_row) as the statement's JSON array takes it: the run id and
    what every row shares come from the statement, times in ISO 8601, unset left out (NULL)."""
    shaped = {name: row[name] for name in ("node_id", "node_type", "status", "attempt")}
    for name in ("output", "error"):
        if row[name] is not None:
            shaped[name] = row[name]
    times = _RETRY_TIMES if row["status"] == "retrying" else _RUN_TIMES
    for name in times:
        if row[name] is not None:
            shaped[name] = row[name].isoformat()
    return shaped


_RUN_TIMES = ("started_at", "finished_at")
#: A row parked for a retry also names when it is due, and whether its message was sent.
_RETRY_TIMES = (*_RUN_TIMES, "next_attempt_at", "published_at")
