"""The hot path's SQL, built once per process.

Building a SQLAlchemy statement and its cache key costs more CPU than PostgreSQL spends running
it (bench/README.md, Notes). These Core statements are built at import with named parameters;
SQLAlchemy memoises their cache keys, so executing one only binds values. Parameter names start
with `p_` because an UPDATE reserves its own column names for the SET clause.

The node_runs statements themselves are app/workflows/node_runs.py's; here are the run's, and
the PostgreSQL statements that compose both into one round trip.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    Boolean,
    Integer,
    String,
    Table,
    Uuid,
    bindparam,
    case,
    column,
    exists,
    func,
    insert,
    literal,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB

from app.engine.schema import ACTIVE_RUN_STATUSES
from app.models import TriggerEvent, Workflow, WorkflowRun
from app.models.base import UTCDateTime
from app.workflows import node_runs
from app.workflows.node_runs import one_of

runs = cast(Table, WorkflowRun.__table__)
_node_runs = node_runs.table
trigger_events = cast(Table, TriggerEvent.__table__)

_NOW = bindparam("p_now", type_=UTCDateTime())

#: What a claim reads: the run, and each node_run's state (one row per node_run).
_RUN_AND_NODE_STATES = (
    runs.c.workflow_id,
    runs.c.workflow_version,
    runs.c.input,
    runs.c.status.label("run_status"),
    _node_runs.c.node_id,
    _node_runs.c.status,
    _node_runs.c.output,
)

#: The run and every node_run of it, in one read (join: one row per node_run).
RUN_WITH_NODE_STATES = (
    select(*_RUN_AND_NODE_STATES)
    .join(_node_runs, _node_runs.c.run_id == runs.c.run_id)
    .where(runs.c.run_id == bindparam("p_run_id"))
)

#: The run's first claimed node starts the run; a run resumed from its failed node keeps the
#: time it first started.
START_RUN = (
    update(runs)
    .where(runs.c.run_id == bindparam("p_run_id"), runs.c.status == "queued")
    .values(status="running", started_at=func.coalesce(runs.c.started_at, _NOW))
)

#: The run's status, as a completion without fan-out reads it (nothing to serialise).
RUN_STATUS = select(runs.c.status).where(runs.c.run_id == bindparam("p_run_id"))

#: The run's status, serialising the completions of one run (fan-out only).
LOCK_RUN = RUN_STATUS.with_for_update()

#: Close the run while it is active: succeeded, or failed with the error naming the node.
CLOSE_RUN = (
    update(runs)
    .where(runs.c.run_id == bindparam("p_run_id"), one_of(runs.c.status, ACTIVE_RUN_STATUSES))
    .values(
        status=bindparam("p_run_status", type_=String()),
        error=bindparam("p_run_error", type_=String()),
        finished_at=bindparam("p_run_finished_at", type_=UTCDateTime()),
    )
)


# PostgreSQL only, below: data-modifying CTEs put a claim or a whole completion into ONE
# statement, so one round trip (and, on an autocommit connection, its own commit) does what
# took a BEGIN, two to four statements and a COMMIT. SQLite runs the statements one by one.

_CLAIMED = node_runs.CLAIM.returning(_node_runs.c.node_id).cte("claimed")

#: The claim, the run's start when this is its first node, and the run with every node state,
#: in one round trip. Every row of the run's node_runs comes back; `claimed_attempt` is set on
#: the claimed node's row only (NULL everywhere: a duplicate message, claim nothing). States
#: are read from the snapshot before the claim, so the claimed node still shows its old status.
CLAIM_WITH_NODE_STATES = (
    select(
        *_RUN_AND_NODE_STATES,
        _CLAIMED.c.attempt.label("claimed_attempt"),
        _CLAIMED.c.redeliveries.label("claimed_redeliveries"),
        _CLAIMED.c.prior_attempts.label("claimed_prior_attempts"),
    )
    .select_from(
        runs.join(_node_runs, _node_runs.c.run_id == runs.c.run_id).outerjoin(
            _CLAIMED, _CLAIMED.c.node_id == _node_runs.c.node_id
        )
    )
    .where(runs.c.run_id == bindparam("p_run_id"))
    .add_cte(START_RUN.where(exists(select(_CLAIMED.c.node_id))).cte("started"))
)

_FENCED = node_runs.FINISH.returning(_node_runs.c.run_id).cte("fenced")
_WHILE_FENCED = exists(select(_FENCED.c.run_id))
_RUN_IS_ACTIVE = exists(
    select(runs.c.run_id).where(
        runs.c.run_id == bindparam("p_run_id"), one_of(runs.c.status, ACTIVE_RUN_STATUSES)
    )
)
#: The rows a completion adds (node_runs.new_row, as one JSON array): control nodes already
#: run (with output, error and times), successors to publish (pending) and dead paths (skipped).
_NEW_ROWS = (
    func.jsonb_to_recordset(bindparam("p_rows", type_=JSONB))
    .table_valued(
        column("node_id", String),
        column("node_type", String),
        column("status", String),
        column("attempt", Integer),
        column("next_attempt_at", UTCDateTime()),
        column("published_at", UTCDateTime()),
        column("started_at", UTCDateTime()),
        column("finished_at", UTCDateTime()),
        column("output", JSONB),
        column("error", String),
        name="new_rows",
    )
    .render_derived(with_types=True)
)
_INSERTED = node_runs.insert_selected(
    node_runs.selected_row(
        run_id=_FENCED.c.run_id,
        node_id=_NEW_ROWS.c.node_id,
        node_type=_NEW_ROWS.c.node_type,
        status=_NEW_ROWS.c.status,
        attempt=_NEW_ROWS.c.attempt,
        # Only a row parked for a retry names these (node_runs.new_row's rule); others: now.
        next_attempt_at=func.coalesce(_NEW_ROWS.c.next_attempt_at, _NOW),
        published_at=case(
            (_NEW_ROWS.c.status == literal_column("'retrying'"), _NEW_ROWS.c.published_at),
            else_=_NOW,
        ),
        started_at=_NEW_ROWS.c.started_at,
        finished_at=_NEW_ROWS.c.finished_at,
        output=_NEW_ROWS.c.output,
        error=_NEW_ROWS.c.error,
    )
    .select_from(_FENCED.join(_NEW_ROWS, true()))
    # A run cancelled while its node ran: the node's finish is kept, nothing after it starts.
    .where(_RUN_IS_ACTIVE)
).cte("inserted")
_CLOSED = (
    CLOSE_RUN.where(bindparam("p_close_run", type_=Boolean()), _WHILE_FENCED)
    .returning(runs.c.run_id)
    .cte("closed")
)
_COMPLETION = select(
    select(func.count()).select_from(_FENCED).scalar_subquery().label("fenced"),
    select(func.count()).select_from(_CLOSED).scalar_subquery().label("closed"),
)

#: A node's completion in one statement: the fenced finish, the new rows (only if the fence
#: held and the run is active) and, with p_close_run, the run's end. Answers whether the fence
#: held and whether this statement closed the run.
COMPLETE_IN_ONE_STATEMENT = _COMPLETION.add_cte(_INSERTED)

#: The same, for a completion that fails the run: its rows that wait (pending, retrying) are
#: cancelled too, as node_runs.cancel_unfinished does.
FAIL_IN_ONE_STATEMENT = _COMPLETION.add_cte(
    _INSERTED, node_runs.CANCEL_UNFINISHED.where(_WHILE_FENCED).cte("cancelled")
)


def _accept_trigger_statement() -> Any:
    workflows = cast(Table, Workflow.__table__)
    now = bindparam("p_now", type_=UTCDateTime())
    run_id = bindparam("p_run_id", type_=Uuid())
    workflow_id = bindparam("p_workflow_id", type_=String())
    current = (
        select(workflows.c.workflow_id)
        .where(
            workflows.c.workflow_id == workflow_id,
            workflows.c.status == "active",
            workflows.c.version == bindparam("p_version", type_=Integer()),
            workflows.c.updated_at == bindparam("p_updated_at", type_=UTCDateTime()),
        )
        .cte("current")
    )
    event = (
        postgresql.insert(trigger_events)
        .from_select(
            ["workflow_id", "idempotency_key", "request_hash", "received_at", "payload", "run_id"],
            select(
                current.c.workflow_id,
                bindparam("p_key", type_=String()),
                bindparam("p_hash", type_=String()),
                now,
                bindparam("p_payload", type_=trigger_events.c.payload.type),
                run_id,
            ),
        )
        .on_conflict_do_nothing(index_elements=["workflow_id", "idempotency_key"])
        .returning(trigger_events.c.id, trigger_events.c.payload)
        .cte("event")
    )
    run = (
        insert(runs)
        .from_select(
            [
                "run_id",
                "workflow_id",
                "workflow_version",
                "status",
                "input",
                "trigger_event_id",
                "source",
                "origin",
                "created_at",
            ],
            select(
                run_id,
                workflow_id,
                bindparam("p_version", type_=Integer()),
                literal("queued"),
                event.c.payload,  # the payload is sent once, for both rows
                event.c.id,
                bindparam("p_source", type_=String()),
                bindparam("p_origin", type_=runs.c.origin.type),
                now,
            ),
        )
        .returning(runs.c.run_id)
        .cte("run")
    )
    entry = node_runs.insert_selected(
        node_runs.selected_row(
            run_id=run.c.run_id,
            node_id=bindparam("p_entry_id", type_=String()),
            node_type=bindparam("p_entry_type", type_=String()),
            status=literal("pending"),
            next_attempt_at=now,
            published_at=now,
        )
    )
    return select(
        select(event.c.id).scalar_subquery().label("event_id"),
        exists(select(current.c.workflow_id)).label("current"),
    ).add_cte(run, entry.cte("entry"))


#: A trigger in one statement: trigger_event + workflow_run (queued) + entry node_run
#: (pending), written only while the workflow row is as read (`current`): `event_id` is None
#: when the key was seen before or the row changed (then nothing was written).
ACCEPT_TRIGGER = _accept_trigger_statement()
