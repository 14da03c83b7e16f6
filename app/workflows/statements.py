"""The hot path's SQL, built once per process.

Building a SQLAlchemy statement and its cache key costs more CPU than PostgreSQL spends running
it (the bench's profile: `coercions.expect`, `_generate_cache_key`, ORM bulk-UPDATE evaluation).
These Core statements are built at import with named parameters; SQLAlchemy memoises their cache
keys, so executing one only binds values. Parameter names start with `p_` because an UPDATE
reserves its own column names for the SET clause.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, and_, bindparam, case, insert, or_, select, update

from app.engine.schema import ACTIVE_RUN_STATUSES
from app.models import NodeRun, WorkflowRun
from app.models.base import UTCDateTime

node_runs = cast(Table, NodeRun.__table__)
runs = cast(Table, WorkflowRun.__table__)

_NOW = bindparam("p_now", type_=UTCDateTime())

#: The run and every node_run of it, in one read (join: one row per node_run).
RUN_WITH_NODE_STATES = (
    select(
        runs.c.workflow_id,
        runs.c.workflow_version,
        runs.c.input,
        runs.c.status.label("run_status"),
        node_runs.c.node_id,
        node_runs.c.status,
        node_runs.c.output,
    )
    .join(node_runs, node_runs.c.run_id == runs.c.run_id)
    .where(runs.c.run_id == bindparam("p_run_id"))
)

#: Claim a node_run: pending (or a due retry), or running with an expired lease (a lost
#: worker; capped by p_max_redeliveries, celery#9082), while its run is still active.
CLAIM_NODE = (
    update(node_runs)
    .where(
        node_runs.c.run_id == bindparam("p_run_id"),
        node_runs.c.node_id == bindparam("p_node_id"),
        or_(
            and_(
                node_runs.c.status.in_(("pending", "retrying")),
                or_(node_runs.c.next_attempt_at.is_(None), node_runs.c.next_attempt_at <= _NOW),
            ),
            and_(
                node_runs.c.status == "running",
                node_runs.c.lease_expires_at < _NOW,
                node_runs.c.redeliveries < bindparam("p_max_redeliveries"),
            ),
        ),
        select(runs.c.run_id)
        .where(runs.c.run_id == bindparam("p_run_id"), runs.c.status.in_(ACTIVE_RUN_STATUSES))
        .exists(),
    )
    .values(
        redeliveries=node_runs.c.redeliveries + case((node_runs.c.status == "running", 1), else_=0),
        status="running",
        attempt=node_runs.c.attempt + 1,
        lease_expires_at=bindparam("p_lease_until", type_=UTCDateTime()),
        started_at=_NOW,
    )
    .returning(node_runs.c.attempt, node_runs.c.redeliveries)
)

#: The run's first claimed node starts the run.
START_RUN = (
    update(runs)
    .where(runs.c.run_id == bindparam("p_run_id"), runs.c.status == "queued")
    .values(status="running", started_at=_NOW)
)

_FENCE = and_(
    node_runs.c.run_id == bindparam("p_run_id"),
    node_runs.c.node_id == bindparam("p_node_id"),
    node_runs.c.status == "running",
    node_runs.c.attempt == bindparam("p_attempt"),
)

#: Record a node's end, only while this attempt still holds the lease (the fence).
FINISH_NODE = (
    update(node_runs)
    .where(_FENCE)
    .values(
        status=bindparam("p_status"),
        output=bindparam("p_output", type_=node_runs.c.output.type),
        error=bindparam("p_error"),
        finished_at=_NOW,
        lease_expires_at=None,
    )
)

#: Park a node for another attempt at p_next_attempt_at (fenced the same way).
RETRY_NODE = (
    update(node_runs)
    .where(_FENCE)
    .values(
        status="retrying",
        error=bindparam("p_error"),
        next_attempt_at=bindparam("p_next_attempt_at", type_=UTCDateTime()),
        published_at=bindparam("p_published_at", type_=UTCDateTime()),
        lease_expires_at=None,
    )
)

#: New node_runs (successors: pending, skipped, or already leased control nodes).
INSERT_NODE_RUNS = insert(node_runs)

#: Every node_run's state in a run (workflows with fan-out read it fresh under the run lock).
NODE_STATES = select(node_runs.c.node_id, node_runs.c.status, node_runs.c.output).where(
    node_runs.c.run_id == bindparam("p_run_id")
)

#: Serialise the completions of one run (fan-out only).
LOCK_RUN = select(runs.c.status).where(runs.c.run_id == bindparam("p_run_id")).with_for_update()
