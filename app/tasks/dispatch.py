"""Publishing node messages, always after the commit that made them pending."""

from __future__ import annotations

import logging
from typing import Any

from app.tasks.celery_app import NODES_QUEUE, RUNS_QUEUE
from app.workflows.runs import NodeRef

log = logging.getLogger(__name__)


def publish(refs: list[NodeRef]) -> None:
    """Send one `dualmcp.run_node` message per ref. A broker failure is logged, not raised: the
    node_run stays pending and the sweeper publishes it again (DESIGN.md: Execution 1 and 3)."""
    from app.tasks.nodes import run_node

    for ref in refs:
        try:
            run_node.apply_async(
                (ref.run_id, ref.node_id),
                queue=NODES_QUEUE if ref.continuation else RUNS_QUEUE,
                countdown=ref.countdown or 0,
            )
        except Exception:
            log.warning(
                "could not publish node %s of run %s; the sweeper will retry",
                ref.node_id,
                ref.run_id,
                exc_info=True,
            )


def queue_depth() -> int | None:
    """Messages waiting in both node queues (admission control); None when it cannot be known
    (a broker other than Redis, or Redis unreachable)."""
    from app.tasks import celery

    try:
        connection: Any = celery.pool.acquire(block=True, timeout=2)  # a pooled Connection
        with connection:
            if connection.transport_cls not in ("redis", "rediss"):
                return None
            client = connection.default_channel.client
            return int(client.llen(NODES_QUEUE)) + int(client.llen(RUNS_QUEUE))
    except Exception:
        log.warning("could not read the queue depth", exc_info=True)
        return None
