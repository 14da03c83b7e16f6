"""Retrying a run (DESIGN.md: Execution 6): from its failed node, or from the start.

From the failed node, the SAME run is re-opened: its failed and cancelled node_runs go back to
pending and are published again, so nodes that succeeded are not repeated and side-effect
idempotency keys (sha256(run_id:node_id)) stay the same. From the start, a NEW run is made with
the same input, on the run's original workflow version or the current one.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.engine.schema import TERMINAL_RUN_STATUSES
from app.errors import Conflict, NotFound
from app.models import NodeRun, WorkflowRun, utcnow
from app.workflows.runs import NodeRef, StartedRun, parse_run_id, start_run
from app.workflows.store import get_definition

RetryFrom = Literal["failed", "start"]
RetryVersion = Literal["original", "current"]


def retry_run(
    session: Session, run_id: str, *, from_: RetryFrom, version: RetryVersion
) -> StartedRun:
    """Re-open or restart the run; publish `to_publish` after commit.

    Conflict when the run's state does not allow it: only a failed run is re-opened, and only a
    finished one is started again. Re-opening keeps the original version (the node_runs belong
    to it), so `version="current"` with `from_="failed"` is a ValueError.
    """
    run = session.get(WorkflowRun, parse_run_id(run_id), with_for_update=True)
    if run is None:
        raise NotFound(f"no run with id {run_id!r}")
    if from_ == "start":
        if run.status not in TERMINAL_RUN_STATUSES:
            raise Conflict(f"run {run_id} is {run.status}; cancel it before starting it again")
        pinned = run.workflow_version if version == "original" else None
        return start_run(
            session,
            run.workflow_id,
            run.input,
            version=pinned,
            source="retry",
            origin={"retry_of": str(run.run_id)},
        )
    if version != "original":
        raise ValueError("a run re-opened from its failed node keeps its original version")
    if run.status != "failed":
        raise Conflict(f"run {run_id} is {run.status}; only a failed run can resume")
    return StartedRun(str(run.run_id), _reopen(session, run))


def _reopen(session: Session, run: WorkflowRun) -> list[NodeRef]:
    """Failed nodes that failed the run, and the nodes cancelled with it, go back to pending.

    `attempt` is kept: it fences completions, so a late answer from an earlier attempt cannot
    overwrite the new one. A node that failed with `on_error: continue` already let the run go
    on, so it is not repeated.
    """
    definition = get_definition(session, run.workflow_id, run.workflow_version)
    rows = session.execute(
        select(NodeRun.node_id, NodeRun.status).where(
            NodeRun.run_id == run.run_id, NodeRun.status.in_(("failed", "cancelled"))
        )
    ).all()
    node_ids = [
        row.node_id
        for row in rows
        if row.status == "cancelled" or definition.node(row.node_id).on_error == "fail"
    ]
    if not node_ids:  # cannot happen for a run failed by the engine; never leave it stuck
        raise Conflict(f"run {run.run_id} has no failed node to resume; retry from the start")
    now = utcnow()
    session.execute(
        update(NodeRun)
        .where(NodeRun.run_id == run.run_id, NodeRun.node_id.in_(node_ids))
        .values(
            status="pending",
            error=None,
            output=None,
            lease_expires_at=None,
            next_attempt_at=now,
            published_at=now,
            started_at=None,
            finished_at=None,
        )
    )
    run.status, run.error, run.finished_at = "queued", None, None
    session.flush()
    order = {node.id: index for index, node in enumerate(definition.nodes)}
    run_id = str(run.run_id)
    return [NodeRef(run_id, node_id) for node_id in sorted(node_ids, key=order.__getitem__)]
