"""Publishing node messages, always after the commit that made them pending.

Messages are sent by task name through a given Celery app, so nothing here imports the task
modules (which publish through this one), and the front end needs none of them.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from app.logs import log_context_value
from app.tasks.celery_app import NODES_QUEUE, RUN_NODE, RUNS_QUEUE, SLOW_QUEUE, settings_of
from app.workflows import node_runs
from app.workflows.runs import NodeRef

log = logging.getLogger(__name__)

#: The node message header that carries the request id (read back by app/tasks/nodes.py).
REQUEST_ID_HEADER = "request_id"
#: Seconds a read of the queue depth is reused: admission control needs the trend, not the
#: exact count, and a Redis round trip per request would slow the front end (bench/README.md).
QUEUE_DEPTH_TTL_S = 0.25


class Dispatcher:
    """Sends node messages through one Celery app and reads how many wait in its queues; a
    failed send is marked in the database behind `sessions`."""

    def __init__(self, celery: Celery, sessions: sessionmaker[Session]) -> None:
        self.celery = celery
        self.sessions = sessions
        self._depth: tuple[float, int | None] = (float("-inf"), None)
        #: Node types routed to the slow queue (DUALMCP_SLOW_NODE_TYPES).
        self.slow_types = settings_of(celery).slow_node_type_set

    def queue_of(self, ref: NodeRef) -> str:
        """Slow (I/O-bound) node types to their own queue; else continuations before new runs."""
        if ref.node_type is not None and ref.node_type in self.slow_types:
            return SLOW_QUEUE
        return NODES_QUEUE if ref.continuation else RUNS_QUEUE

    def publish(self, refs: list[NodeRef]) -> None:
        """Send one `dualmcp.run_node` message per ref. A broker failure is logged, not raised:
        the node_run stays pending, marked unpublished, and the sweeper's next pass publishes it
        (DESIGN.md: Execution 1 and 3)."""
        failed: list[NodeRef] = []
        # The request (or node) these messages come from: its id follows them in a header, so
        # the node's log lines carry it with no database read (app/web/request_id.py).
        request_id = log_context_value("request_id")
        headers = {REQUEST_ID_HEADER: request_id} if request_id else None
        for ref in refs:
            try:
                args = (ref.run_id, ref.node_id)
                self.celery.send_task(
                    RUN_NODE,
                    args,
                    queue=self.queue_of(ref),
                    countdown=ref.countdown or 0,
                    ignore_result=True,  # as the task says: no result-backend subscription
                    headers=headers,
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
            _mark_unpublished(self.sessions, failed)

    def queue_depth(self) -> int | None:
        """Messages waiting in the node queues, the slow one included (a backlog is a backlog:
        admission control bounds it, DESIGN.md Execution 7; one pipeline, one round trip as
        before); None when it cannot be
        known (a broker other than Redis, or Redis unreachable). Read at most every
        QUEUE_DEPTH_TTL_S."""
        read_at, depth = self._depth
        now = time.monotonic()
        if now - read_at < QUEUE_DEPTH_TTL_S:
            return depth
        depth = _read_queue_depth(self.celery)
        self._depth = (now, depth)
        return depth


def _cheap_publish(args: tuple[str, str]) -> dict[str, Any]:
    """Options that skip work a node message does not need (send_task's own keywords, not in
    the type stubs): every worker declares both queues at start, a Redis list needs no
    declaring, and two strings need no saferepr (their cost: bench/README.md, Notes)."""
    return {"declare": [], "argsrepr": repr(args), "kwargsrepr": "{}"}


def _mark_unpublished(sessions: sessionmaker[Session], refs: list[NodeRef]) -> None:
    """published_at = NULL: the sweeper republishes such rows at once, where a row merely old
    waits DUALMCP_PENDING_REPUBLISH_S (it may still be queued behind a backlog)."""
    keys = [(uuid.UUID(ref.run_id), ref.node_id) for ref in refs]
    try:
        with sessions.begin() as session:
            node_runs.mark_unpublished(session, keys)
    except Exception:
        log.warning("could not mark %d node(s) unpublished", len(refs), exc_info=True)


def _read_queue_depth(celery: Celery) -> int | None:
    try:
        connection: Any = celery.pool.acquire(block=True, timeout=2)  # a pooled Connection
        with connection:
            if connection.transport_cls not in ("redis", "rediss"):
                return None
            pipeline = connection.default_channel.client.pipeline(transaction=False)
            pipeline.llen(NODES_QUEUE).llen(RUNS_QUEUE).llen(SLOW_QUEUE)
            return sum(int(length) for length in pipeline.execute())
    except Exception:
        log.warning("could not read the queue depth", exc_info=True)
        return None
