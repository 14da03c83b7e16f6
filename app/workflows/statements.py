"""The hot path's SQL, built once per process.

Building a SQLAlchemy statement and its cache key costs more CPU than PostgreSQL spends running
it (the bench's profile: `coercions.expect`, `_generate_cache_key`, ORM bulk-UPDATE evaluation).
These Core statements are built at import with named parameters; SQLAlchemy memoises their cache
keys, so executing one only binds values. Parameter names start with `p_` because an UPDATE
reserves its own column names for the SET clause.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import (
    Boolean,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    case,
    column,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from app.engine.schema import ACTIVE_RUN_STATUSES
from app.models import NodeRun, WorkflowRun
from app.models.base import UTCDateTime

node_runs = cast(Table, NodeRun.__table__)
runs = cast(Table, WorkflowRun.__table__)

_NOW = bindparam("p_now", type_=UTCDateTime())


def _one_of(column: ColumnElement[str], values: tuple[str, ...]) -> ColumnElement[bool]:
    """`column IN (...)` as plain `=` comparisons: an IN list is an "expanding" parameter that
    SQLAlchemy renders again on every execution (it showed in the worker's profile)."""
    return or_(*(column == value for value in values))


#: What a claim reads: the run, and each node_run's state (one row per node_run).
_RUN_AND_NODE_STATES = (
    runs.c.workflow_id,
    runs.c.workflow_version,
    runs.c.input,
    runs.c.status.label("run_status"),
    node_runs.c.node_id,
    node_runs.c.status,
    node_runs.c.output,
)

#: The run and every node_run of it, in one read (join: one row per node_run).
RUN_WITH_NODE_STATES = (
    select(*_RUN_AND_NODE_STATES)
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
                _one_of(node_runs.c.status, ("pending", "retrying")),
                or_(node_runs.c.next_attempt_at.is_(None), node_runs.c.next_attempt_at <= _NOW),
            ),
            and_(
                node_runs.c.status == "running",
                node_runs.c.lease_expires_at < _NOW,
                node_runs.c.redeliveries < bindparam("p_max_redeliveries"),
            ),
        ),
        select(runs.c.run_id)
        .where(runs.c.run_id == bindparam("p_run_id"), _one_of(runs.c.status, ACTIVE_RUN_STATUSES))
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


# PostgreSQL only, below: data-modifying CTEs put a claim or a whole completion into ONE
# statement, so one round trip (and, on an autocommit connection, its own commit) does what
# took a BEGIN, two to four statements and a COMMIT. SQLite keeps the statements above.

_CLAIMED = CLAIM_NODE.returning(node_runs.c.node_id).cte("claimed")

#: The claim, the run's start when this is its first node, and the run with every node state,
#: in one round trip. Every row of the run's node_runs comes back; `claimed_attempt` is set on
#: the claimed node's row only (NULL everywhere: a duplicate message, claim nothing). States
#: are read from the snapshot before the claim, so the claimed node still shows its old status.
CLAIM_WITH_NODE_STATES = (
    select(
        *_RUN_AND_NODE_STATES,
        _CLAIMED.c.attempt.label("claimed_attempt"),
        _CLAIMED.c.redeliveries.label("claimed_redeliveries"),
    )
    .select_from(
        runs.join(node_runs, node_runs.c.run_id == runs.c.run_id).outerjoin(
            _CLAIMED, _CLAIMED.c.node_id == node_runs.c.node_id
        )
    )
    .where(runs.c.run_id == bindparam("p_run_id"))
    .add_cte(START_RUN.where(exists(select(_CLAIMED.c.node_id))).cte("started"))
)

#: Correct a lease taken with the default node timeout, for a node with a timeout of its own.
SET_LEASE = (
    update(node_runs)
    .where(_FENCE)
    .values(lease_expires_at=bindparam("p_lease_until", type_=UTCDateTime()))
)

_FENCED = FINISH_NODE.returning(node_runs.c.run_id).cte("fenced")
_RUN_IS_ACTIVE = exists(
    select(runs.c.run_id).where(
        runs.c.run_id == bindparam("p_run_id"), _one_of(runs.c.status, ACTIVE_RUN_STATUSES)
    )
)
#: The rows a completion adds, as one JSON array: control nodes already run (succeeded, with
#: output and times), successors to publish (pending) and dead paths (skipped).
_NEW_ROWS = (
    func.jsonb_to_recordset(bindparam("p_rows", type_=JSONB))
    .table_valued(
        column("node_id", String),
        column("node_type", String),
        column("status", String),
        column("attempt", Integer),
        column("started_at", UTCDateTime()),
        column("finished_at", UTCDateTime()),
        column("output", JSONB),
        name="new_rows",
    )
    .render_derived(with_types=True)
)
_INSERTED = (
    insert(node_runs)
    .from_select(
        [
            "run_id",
            "node_id",
            "node_type",
            "status",
            "attempt",
            "redeliveries",
            "next_attempt_at",
            "published_at",
            "started_at",
            "finished_at",
            "output",
        ],
        select(
            _FENCED.c.run_id,
            _NEW_ROWS.c.node_id,
            _NEW_ROWS.c.node_type,
            _NEW_ROWS.c.status,
            _NEW_ROWS.c.attempt,
            literal(0),
            _NOW,
            _NOW,
            _NEW_ROWS.c.started_at,
            _NEW_ROWS.c.finished_at,
            _NEW_ROWS.c.output,
        )
        .select_from(_FENCED.join(_NEW_ROWS, true()))
        # A run cancelled while its node ran: the node's finish is kept, nothing after it starts.
        .where(_RUN_IS_ACTIVE),
    )
    .cte("inserted")
)
_CLOSED = (
    update(runs)
    .where(
        runs.c.run_id == bindparam("p_run_id"),
        _one_of(runs.c.status, ACTIVE_RUN_STATUSES),
        bindparam("p_close_run", type_=Boolean()),
        exists(select(_FENCED.c.run_id)),
    )
    .values(status="succeeded", finished_at=bindparam("p_run_finished_at", type_=UTCDateTime()))
    .returning(runs.c.run_id)
    .cte("closed")
)

#: A node's completion in one statement: the fenced finish, the new rows (only if the fence
#: held) and, with p_close_run, the run's success. Answers whether the fence held and whether
#: this statement closed the run.
COMPLETE_IN_ONE_STATEMENT = select(
    select(func.count()).select_from(_FENCED).scalar_subquery().label("fenced"),
    select(func.count()).select_from(_CLOSED).scalar_subquery().label("closed"),
).add_cte(_INSERTED)
