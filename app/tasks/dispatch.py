"""Publishing node messages, always after the commit that made them pending."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from app.tasks.celery_app import NODES_QUEUE, RUNS_QUEUE
from app.workflows.runs import NodeRef

log = logging.getLogger(__name__)


def publish(refs: list[NodeRef]) -> None:
    """Send one `dualmcp.run_node` message per ref. A broker failure is logged, not raised: the
    node_run stays pending, marked unpublished, and the sweeper's next pass publishes it
    (DESIGN.md: Execution 1 and 3)."""
    from app.tasks.nodes import run_node

    failed: list[NodeRef] = []
    for ref in refs:
        try:
            args = (ref.run_id, ref.node_id)
            run_node.apply_async(
                args,
                queue=NODES_QUEUE if ref.continuation else RUNS_QUEUE,
                countdown=ref.countdown or 0,
                **_cheap_publish(args),
            )
        except Exception:
            log.warning(
                "could not publish node %s of run %s; the sweeper will retry",
                ref.node_id,
                ref.run_id,
                exc_info=True,
            )
            failed.append(ref)
    if failed:
        _mark_unpublished(failed)


def _cheap_publish(args: tuple[str, str]) -> dict[str, Any]:
    """Options that skip work a node message does not need (send_task's own keywords, not in
    the type stubs): both queues are declared by every worker at start and a Redis list needs
    no declaring, and the repr of two strings needs no saferepr. Together they were a quarter
    of a publish's CPU."""
    return {"declare": [], "argsrepr": repr(args), "kwargsrepr": "{}"}


def _mark_unpublished(refs: list[NodeRef]) -> None:
    """published_at = NULL: the sweeper republishes such rows at once, where a row merely old
    waits DUALMCP_PENDING_REPUBLISH_S (it may still be queued behind a backlog)."""
    from sqlalchemy import tuple_, update

    from app.models import NodeRun
    from app.tasks.runtime import get_runtime

    keys = [(uuid.UUID(ref.run_id), ref.node_id) for ref in refs]
    try:
        with get_runtime().sessions.begin() as session:
            session.execute(
                update(NodeRun)
                .where(tuple_(NodeRun.run_id, NodeRun.node_id).in_(keys))
                .values(published_at=None)
                .execution_options(synchronize_session=False)
            )
    except Exception:
        log.warning("could not mark %d node(s) unpublished", len(refs), exc_info=True)


#: Seconds a read of the queue depth is reused: admission control needs the trend, not the
#: exact count, and a Redis round trip per request would cost the front end a tenth of its rate.
QUEUE_DEPTH_TTL_S = 0.25
_depth_cache: tuple[float, int | None] = (float("-inf"), None)


def queue_depth() -> int | None:
    """Messages waiting in both node queues (admission control); None when it cannot be known
    (a broker other than Redis, or Redis unreachable). Read at most every QUEUE_DEPTH_TTL_S."""
    global _depth_cache
    read_at, depth = _depth_cache
    now = time.monotonic()
    if now - read_at < QUEUE_DEPTH_TTL_S:
        return depth
    depth = _read_queue_depth()
    _depth_cache = (now, depth)
    return depth


def _read_queue_depth() -> int | None:
    from app.tasks import celery

    try:
        connection: Any = celery.pool.acquire(block=True, timeout=2)  # a pooled Connection
        with connection:
            if connection.transport_cls not in ("redis", "rediss"):
                return None
            pipeline = connection.default_channel.client.pipeline(transaction=False)
            pipeline.llen(NODES_QUEUE).llen(RUNS_QUEUE)
            return sum(int(length) for length in pipeline.execute())
    except Exception:
        log.warning("could not read the queue depth", exc_info=True)
        return None
