"""Handing a node back when its worker stops (warm shutdown past the soft-shutdown timeout).

A stopping worker must not sit on a lease until it expires (the node's timeout plus grace): the
worker's SIGTERM handler calls `interrupt()`, which raises HandBack into the running driver;
execute_node then returns the node to `pending` as if this attempt had never started (a graceful
stop is neither a failure nor a lost worker) and publishes it again for another worker.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session, sessionmaker

from app import metrics
from app.models import utcnow
from app.workflows import node_runs
from app.workflows.planner import Lease
from app.workflows.runs import NodeRef

log = logging.getLogger(__name__)

_driver_running = False


class HandBack(BaseException):
    """Raised into a running driver when its worker stops; a BaseException so that drivers'
    and invoke_driver's `except Exception` do not turn it into a node failure."""


@contextmanager
def interruptible() -> Iterator[None]:
    """Mark the block (a driver call) as one a stop may interrupt."""
    global _driver_running
    _driver_running = True
    try:
        yield
    finally:
        _driver_running = False


def interrupt() -> bool:
    """From a signal handler: raise HandBack into a running driver; False when none runs."""
    if _driver_running:
        raise HandBack
    return False


def hand_back(session: Session, lease: Lease) -> bool:
    """Return the leased node to pending, its attempt not counted; False if the lease was
    already taken back (then whoever holds it now carries on)."""
    return node_runs.hand_back(
        session, uuid.UUID(lease.run_id), lease.node_id, lease.attempt, utcnow()
    )


def hand_back_leases(sessions: sessionmaker[Session], leases: list[Lease]) -> list[NodeRef]:
    """Hand back every lease in one transaction; the nodes to publish again after it."""
    with sessions.begin() as session:
        handed = [lease for lease in leases if hand_back(session, lease)]
    for lease in handed:
        metrics.record_node_handback()
        log.warning("worker stopping: node %s of run %s handed back", lease.node_id, lease.run_id)
    return [NodeRef(lease.run_id, lease.node_id, node_type=lease.node.type) for lease in handed]
