"""The node tasks: thin adapters that lease, invoke, complete and publish.

`run_node` reads like DESIGN.md Execution 2: take the lease, call the driver with no session
open, write the outcome and the successors in one transaction, publish after commit. Control
nodes (conditional, transform) that come next run inline in the same task, still recorded as
their own node_runs (DESIGN.md Execution 7).
"""

from __future__ import annotations

import logging

from celery import shared_task

from app import drivers
from app.tasks.dispatch import publish
from app.tasks.runtime import get_runtime
from app.workflows.execution import Lease
from app.workflows.invoke import execute_node
from app.workflows.runs import NodeRef
from app.workflows.sweeper import sweep as sweep_once

log = logging.getLogger(__name__)


@shared_task(name="dualmcp.run_node", ignore_result=True)
def run_node(run_id: str, node_id: str) -> None:
    """Run one node (and any control nodes right after it); duplicates are dropped by the lease."""
    runtime = get_runtime()
    work = [NodeRef(run_id, node_id)]
    while work:
        ref = work.pop(0)
        lease, successors = execute_node(runtime.sessions, runtime.settings, runtime.http, ref)
        if lease is None:
            log.debug("node %s of run %s not claimable; dropped", ref.node_id, ref.run_id)
            continue
        inline = [s for s in successors if s.countdown is None and _is_inline(lease, s.node_id)]
        publish([s for s in successors if s not in inline])
        work.extend(inline)


@shared_task(name="dualmcp.sweep", ignore_result=True)
def sweep() -> int:
    """Publish lost or due node messages; return how many."""
    runtime = get_runtime()
    with runtime.sessions.begin() as session:
        refs = sweep_once(session, runtime.settings)
    publish(refs)
    if refs:
        log.info("sweeper published %d node message(s)", len(refs))
    return len(refs)


def _is_inline(lease: Lease, node_id: str) -> bool:
    try:
        return drivers.get_driver(lease.definition.node(node_id).type).inline
    except drivers.UnknownDriver:
        return False
