"""Retrying a run (DESIGN.md: Execution 6): from its failed node, or from the start.

From the failed node, the SAME run is re-opened: its failed and cancelled node_runs go back to
pending and are published again, so nodes that succeeded are not repeated and side-effect
idempotency keys (sha256(run_id:node_id)) stay the same. Each re-opened node gets its retry
policy again, counted from the resume, while its `attempt` goes on counting (a node that failed
its third and last attempt resumes at 4, 5, 6), as Temporal's UI shows the attempts of a reset
workflow; the run keeps the time it first started. From the start, a NEW run is made with the
same input, on the run's original workflow version or the current one.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy.orm import Session

from app.engine.schema import TERMINAL_RUN_STATUSES
from app.errors import Conflict, NotFound
from app.models import WorkflowRun, utcnow
from app.workflows import node_runs
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
    """Failed nodes that failed the run, and the nodes cancelled with it, go back to pending,
    each with its retry policy again (node_runs.reopen: `attempt` goes on counting, the policy
    counts from here). A node that failed with `on_error: continue` already let the run go on,
    so it is not repeated. The run keeps the time it first started (statements.START_RUN).
    """
    definition = get_definition(session, run.workflow_id, run.workflow_version)
    node_ids = [
        row.node_id
        for row in node_runs.ended(session, run.run_id)
        if row.status == "cancelled" or definition.node(row.node_id).on_error == "fail"
    ]
    if not node_ids:  # cannot happen for a run failed by the engine; never leave it stuck
        raise Conflict(f"run {run.run_id} has no failed node to resume; retry from the start")
    node_runs.reopen(session, run.run_id, node_ids, utcnow())
    run.status, run.error, run.finished_at = "queued", None, None
    session.flush()
    order = {node.id: index for index, node in enumerate(definition.nodes)}
    run_id = str(run.run_id)
    return [
        NodeRef(run_id, node_id, node_type=definition.node(node_id).type)
        for node_id in sorted(node_ids, key=order.__getitem__)
    ]
