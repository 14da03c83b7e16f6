"""The node tasks: thin adapters over app/workflows, publishing only after commit.

`run_node` reads like DESIGN.md Execution 2 (app/workflows/invoke.py: execute_node): take the
lease, call the driver with no session open, write the outcome and the successors in one
transaction, publish after commit. Control nodes (conditional, transform) that come next run in
the same task, still recorded as their own node_runs (DESIGN.md Execution 7).
"""

from __future__ import annotations

import logging

from celery import shared_task
from sqlalchemy.exc import OperationalError

from app import metrics
from app.logs import log_context
from app.tasks.celery_app import RUN_NODE, SWEEP
from app.tasks.dispatch import REQUEST_ID_HEADER
from app.tasks.runtime import get_runtime, publish
from app.workflows.invoke import execute_node
from app.workflows.runs import NodeRef
from app.workflows.sweeper import sweep_once

log = logging.getLogger(__name__)


@shared_task(
    name=RUN_NODE,
    ignore_result=True,
    # A database connection lost mid-task (PostgreSQL restarted): the pool is invalidated and
    # the message is sent again shortly; leases make a repeat harmless.
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=10,
    max_retries=10,
)
def run_node(run_id: str, node_id: str) -> None:
    """Run one node (and the control nodes right after it); duplicates claim nothing. The
    request id its message carries is in its log lines and in the messages it sends on."""
    runtime = get_runtime()
    ref = NodeRef(run_id, node_id)
    with log_context(request_id=_request_id()):
        publish(
            execute_node(
                runtime.sessions,
                runtime.settings,
                runtime.http,
                ref,
                claims=runtime.claims,
                agents=runtime.agents,
            )
        )


def _request_id() -> str | None:
    """The id of the request that started the run, from this message's headers (a message the
    sweeper republished has none)."""
    request = run_node.request
    value = getattr(request, REQUEST_ID_HEADER, None) or (request.headers or {}).get(
        REQUEST_ID_HEADER
    )
    return value if isinstance(value, str) else None


@shared_task(name=SWEEP, ignore_result=True)
def sweep() -> int:
    """Publish lost or due node messages; return how many."""
    runtime = get_runtime()
    with runtime.sessions.begin() as session:
        result = sweep_once(session, runtime.settings)
    publish(result.to_publish)
    metrics.record_sweep(result.lease_expired, result.not_picked_up, result.worker_lost)
    for status, workflow_id in result.finished:
        metrics.record_run_finished(
            status, workflow_id, max_workflows=runtime.settings.metrics_max_workflows
        )
    if result.to_publish:
        log.info("sweeper published %d node message(s)", len(result.to_publish))
    return len(result.to_publish)
