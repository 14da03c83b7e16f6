"""The node_runs row: its shape, and every change of its state (DESIGN.md: Execution 2, 3, 6).

    new_row ──> pending ──claim──> running ──finish──> succeeded | failed
                 ^ ^ ^               │
                 │ │ └──hand back────┤   (a stopping worker: the attempt is not counted)
                 │ └────expire───────┤   (a lost worker's lease; past the cap: finish)
                 │                   └──retry──> retrying ──claim──> running
                 └──reopen── failed | cancelled        (a run resumed from its failed node)
    pending | retrying ──cancel──> cancelled            (the run cancelled, or failed)
    published_at: now when a message is sent, NULL when sending failed (mark unpublished)
    attempts: the row's columns describe its latest attempt; when another attempt begins
    (claim) or the run resumes (reopen), that one is appended to `attempts` first

Nothing else in the project writes a node_run: the portable paths call these functions, and
the PostgreSQL one-statement paths (app/workflows/statements.py) compose the statements
below. Every statement is built once, at import (statements.py says why).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Integer,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    insert,
    literal_column,
    null,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql import Insert
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from app.engine.schema import ACTIVE_RUN_STATUSES
from app.models import NodeRun, WorkflowRun
from app.models.base import UTCDateTime

table = cast(Table, NodeRun.__table__)
_runs = cast(Table, WorkflowRun.__table__)
_NOW = bindparam("p_now", type_=UTCDateTime())


def one_of(column: ColumnElement[str], values: Iterable[str]) -> ColumnElement[bool]:
    """`column IN (...)` as plain `=` comparisons: an IN list is an "expanding" parameter that
    SQLAlchemy renders again on every execution."""
    return or_(*(column == value for value in values))


# --- a new row -----------------------------------------------------------------------------

#: The columns every new row names, in this order: one executemany inserts any mix of rows,
#: and the PostgreSQL statements insert a SELECT of the same list (`insert_selected`).
COLUMNS = (
    "run_id",
    "node_id",
    "node_type",
    "status",
    "attempt",
    "prior_attempts",
    "redeliveries",
    "next_attempt_at",
    "published_at",
    "started_at",
    "finished_at",
    "lease_expires_at",
    "output",
    "error",
)


def new_row(
    run_id: uuid.UUID,
    node_id: str,
    node_type: str,
    status: str,
    now: datetime,
    *,
    attempt: int = 0,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    output: Any = None,
    error: str | None = None,
    next_attempt_at: datetime | None = None,
    published_at: datetime | None = None,
) -> dict[str, Any]:
    """A node_run as first written: pending (published now), skipped, or a control node that
    already ran inline (succeeded, failed, or retrying with its own `next_attempt_at`; its
    attempt ended now, as `retry` records it, and the claim of the next one keeps it)."""
    if status == "retrying" and finished_at is None:
        finished_at = now
    return {
        "run_id": run_id,
        "node_id": node_id,
        "node_type": node_type,
        "status": status,
        "attempt": attempt,
        "prior_attempts": 0,
        "redeliveries": 0,
        "next_attempt_at": next_attempt_at or now,
        "published_at": published_at if status == "retrying" else now,
        "started_at": started_at,
        "finished_at": finished_at,
        "lease_expires_at": None,
        "output": output,
        "error": error,
    }


INSERT = insert(table)


def insert_rows(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Write new rows (made by `new_row`), all in one executemany."""
    if rows:
        session.execute(INSERT, rows[0] if len(rows) == 1 else list(rows))


def selected_row(**values: Any) -> Select[Any]:
    """A SELECT of one new row's columns as SQL expressions, for INSERT ... SELECT: the same
    columns and defaults as `new_row`, for the PostgreSQL one-statement paths."""
    zero = literal_column("0", Integer)  # rendered in the SQL: no parameter to bind
    defaults: dict[str, Any] = {
        "attempt": zero,
        "prior_attempts": zero,
        "redeliveries": zero,
        "started_at": null(),
        "finished_at": null(),
        "lease_expires_at": null(),
        "output": null(),
        "error": null(),
    }
    columns = defaults | values
    return select(*(columns[name] for name in COLUMNS))


def insert_selected(selected: Select[Any]) -> Insert:
    return insert(table).from_select(COLUMNS, selected)


# --- the history of attempts ---------------------------------------------------------------


class AppendedAttempt(FunctionElement[Any]):
    """`attempts` with one more entry {attempt, started_at, finished_at, error}, built in SQL
    (the row's own columns are its values), chosen per dialect at compile time: jsonb on
    PostgreSQL, SQLite's JSON1 elsewhere. Times are the database's text of a timestamp; the
    read side (app/workflows/runs.py) shows them as ISO 8601 UTC."""

    name = "appended_attempt"
    inherit_cache = True


@compiles(AppendedAttempt, "postgresql")
def _appended_on_postgresql(element: AppendedAttempt, compiler: SQLCompiler, **kw: Any) -> str:
    attempts, attempt, started, finished, error = (
        compiler.process(clause, **kw) for clause in element.clauses
    )
    # Casts: jsonb_build_object takes "any", so an untyped parameter would not resolve.
    return (
        f"COALESCE({attempts}, '[]'::jsonb) || jsonb_build_array(jsonb_build_object("
        f"'attempt', CAST({attempt} AS INTEGER), "
        f"'started_at', CAST({started} AS TIMESTAMP WITH TIME ZONE), "
        f"'finished_at', CAST({finished} AS TIMESTAMP WITH TIME ZONE), "
        f"'error', CAST({error} AS TEXT)))"
    )


@compiles(AppendedAttempt)
def _appended_elsewhere(element: AppendedAttempt, compiler: SQLCompiler, **kw: Any) -> str:
    attempts, attempt, started, finished, error = (
        compiler.process(clause, **kw) for clause in element.clauses
    )
    return (
        f"json_insert(COALESCE({attempts}, '[]'), '$[#]', json_object("
        f"'attempt', {attempt}, 'started_at', {started}, 'finished_at', {finished}, "
        f"'error', {error}))"
    )


#: What a lost worker's attempt reports as its error.
WORKER_LOST = "worker lost (its lease expired)"
_WORKER_LOST: ColumnElement[str] = literal_column(f"'{WORKER_LOST}'", String)


def _with_latest_attempt(
    finished_at: ColumnElement[Any], error: ColumnElement[Any]
) -> ColumnElement[Any]:
    """`attempts` with the row's latest attempt appended, when it made one (`started_at` is
    set): a fresh row, or one handed back by a stopping worker, has nothing to add."""
    latest = AppendedAttempt(
        table.c.attempts, table.c.attempt, table.c.started_at, finished_at, error
    )
    return case((table.c.started_at.is_not(None), latest), else_=table.c.attempts)


_LOST = table.c.status == "running"  # claimed again with its lease expired: the worker was lost

#: Before a new attempt starts: the latest one into the history (a retry's failure, or a lost
#: worker's attempt). A row never claimed before pays one CASE that keeps the column as is.
_CLAIM_HISTORY = _with_latest_attempt(
    case((_LOST, table.c.lease_expires_at), else_=table.c.finished_at),
    case((_LOST, _WORKER_LOST), else_=table.c.error),
)

# --- claim ---------------------------------------------------------------------------------

_RUN_IS_ACTIVE = (
    select(_runs.c.run_id)
    .where(_runs.c.run_id == bindparam("p_run_id"), one_of(_runs.c.status, ACTIVE_RUN_STATUSES))
    .exists()
)

#: Claim a node_run: pending (or a due retry), or running with an expired lease (a lost
#: worker; capped by p_max_redeliveries, celery#9082), while its run is still active.
CLAIM = (
    update(table)
    .where(
        table.c.run_id == bindparam("p_run_id"),
        table.c.node_id == bindparam("p_node_id"),
        or_(
            and_(
                one_of(table.c.status, ("pending", "retrying")),
                or_(table.c.next_attempt_at.is_(None), table.c.next_attempt_at <= _NOW),
            ),
            and_(
                table.c.status == "running",
                table.c.lease_expires_at < _NOW,
                table.c.redeliveries < bindparam("p_max_redeliveries"),
            ),
        ),
        _RUN_IS_ACTIVE,
    )
    .values(
        attempts=_CLAIM_HISTORY,
        redeliveries=table.c.redeliveries + case((table.c.status == "running", 1), else_=0),
        status="running",
        attempt=table.c.attempt + 1,
        lease_expires_at=bindparam("p_lease_until", type_=UTCDateTime()),
        started_at=_NOW,
        finished_at=None,
        error=None,
    )
    .returning(table.c.attempt, table.c.redeliveries, table.c.prior_attempts)
)


def claim(
    session: Session,
    run_id: uuid.UUID,
    node_id: str,
    now: datetime,
    lease_until: datetime,
    max_redeliveries: int,
) -> Any:
    """The claimed row's (attempt, redeliveries, prior_attempts), or None: a duplicate
    message, a retry not due yet, or a run that is over."""
    return session.execute(
        CLAIM,
        {
            "p_run_id": run_id,
            "p_node_id": node_id,
            "p_now": now,
            "p_lease_until": lease_until,
            "p_max_redeliveries": max_redeliveries,
        },
    ).first()


#: Only the attempt that holds the lease may change a running row (the fence).
_FENCE = and_(
    table.c.run_id == bindparam("p_run_id"),
    table.c.node_id == bindparam("p_node_id"),
    table.c.status == "running",
    table.c.attempt == bindparam("p_attempt"),
)

#: Correct a lease taken with the default node timeout, for a node with a timeout of its own.
SET_LEASE = (
    update(table)
    .where(_FENCE)
    .values(lease_expires_at=bindparam("p_lease_until", type_=UTCDateTime()))
)


def set_lease(
    session: Session, run_id: uuid.UUID, node_id: str, attempt: int, lease_until: datetime
) -> None:
    session.execute(
        SET_LEASE,
        {
            "p_run_id": run_id,
            "p_node_id": node_id,
            "p_attempt": attempt,
            "p_lease_until": lease_until,
        },
    )


# --- finish, retry -------------------------------------------------------------------------

#: Record a node's end, only while this attempt still holds the lease.
FINISH = (
    update(table)
    .where(_FENCE)
    .values(
        status=bindparam("p_status"),
        output=bindparam("p_output", type_=table.c.output.type),
        error=bindparam("p_error"),
        finished_at=_NOW,
        lease_expires_at=None,
    )
)


def finish(
    session: Session,
    run_id: uuid.UUID,
    node_id: str,
    attempt: int,
    status: str,
    output: Any,
    error: str | None,
    now: datetime,
) -> bool:
    """succeeded or failed; False when the lease was taken back (someone else owns the node)."""
    finished = session.execute(
        FINISH,
        {
            "p_run_id": run_id,
            "p_node_id": node_id,
            "p_attempt": attempt,
            "p_status": status,
            "p_output": output,
            "p_error": error,
            "p_now": now,
        },
    )
    return bool(finished.rowcount)  # type: ignore[attr-defined]


#: Park a node for another attempt at p_next_attempt_at: fenced, and only while its run is
#: active (a cancelled run's node is not left waiting for an attempt that never comes).
RETRY = (
    update(table)
    .where(_FENCE, _RUN_IS_ACTIVE)
    .values(
        status="retrying",
        error=bindparam("p_error"),
        finished_at=_NOW,  # the failed attempt's end; the next claim moves it to `attempts`
        next_attempt_at=bindparam("p_next_attempt_at", type_=UTCDateTime()),
        published_at=bindparam("p_published_at", type_=UTCDateTime()),
        lease_expires_at=None,
    )
)


def retry(
    session: Session,
    run_id: uuid.UUID,
    node_id: str,
    attempt: int,
    error: str | None,
    next_attempt_at: datetime,
    published_at: datetime | None,
    now: datetime,
) -> str | None:
    """retrying until `next_attempt_at` (`published_at` None: the sweeper sends the message
    when it is due); in a run no longer active the node ends failed instead. The status
    written, or None when the lease was taken back (someone else owns the node)."""
    parked = session.execute(
        RETRY,
        {
            "p_run_id": run_id,
            "p_node_id": node_id,
            "p_attempt": attempt,
            "p_error": error,
            "p_next_attempt_at": next_attempt_at,
            "p_published_at": published_at,
            "p_now": now,
        },
    )
    if parked.rowcount:  # type: ignore[attr-defined]
        return "retrying"
    if finish(session, run_id, node_id, attempt, "failed", None, error, now):
        return "failed"
    return None


# --- hand back, expire, republish ----------------------------------------------------------

_HAND_BACK = (
    update(table)
    .where(_FENCE)
    .values(
        status="pending",
        attempt=table.c.attempt - 1,
        lease_expires_at=None,
        started_at=None,
        next_attempt_at=_NOW,
        published_at=_NOW,
    )
)


def hand_back(
    session: Session, run_id: uuid.UUID, node_id: str, attempt: int, now: datetime
) -> bool:
    """Back to pending as if this attempt had never started; False if the lease was already
    taken back."""
    handed = session.execute(
        _HAND_BACK, {"p_run_id": run_id, "p_node_id": node_id, "p_attempt": attempt, "p_now": now}
    )
    return bool(handed.rowcount)  # type: ignore[attr-defined]


def expire_leases(session: Session, now: datetime, max_redeliveries: int) -> list[Any]:
    """Running rows whose lease expired (their worker was lost) back to pending, one more
    redelivery counted; (run_id, node_id, node_type) of each. Those past the cap are
    `exhausted_leases`."""
    return list(
        session.execute(
            update(table)
            .where(
                table.c.status == "running",
                table.c.lease_expires_at < now,
                table.c.redeliveries < max_redeliveries,
            )
            .values(
                status="pending",
                lease_expires_at=None,
                next_attempt_at=now,
                published_at=now,
                redeliveries=table.c.redeliveries + 1,
                # The lost attempt as the row's latest: the next claim moves it to `attempts`.
                finished_at=now,
                error=WORKER_LOST,
            )
            .returning(table.c.run_id, table.c.node_id, table.c.node_type)
        ).all()
    )


def exhausted_leases(session: Session, now: datetime, max_redeliveries: int) -> list[Any]:
    """Running rows whose lease expired once too often, with what failing them needs."""
    return list(
        session.execute(
            select(
                table.c.run_id,
                table.c.node_id,
                table.c.attempt,
                table.c.prior_attempts,
                table.c.redeliveries,
                _runs.c.workflow_id,
                _runs.c.workflow_version,
                _runs.c.input,
            )
            .join(_runs, _runs.c.run_id == table.c.run_id)
            .where(
                table.c.status == "running",
                table.c.lease_expires_at < now,
                table.c.redeliveries >= max_redeliveries,
            )
        ).all()
    )


def republish_due(session: Session, now: datetime, stale: datetime) -> list[Any]:
    """Pending or due rows of active runs whose message was sent before `stale` (or never):
    marked published now; (run_id, node_id, node_type) of each, to publish after the commit."""
    return list(
        session.execute(
            update(table)
            .where(
                one_of(table.c.status, ("pending", "retrying")),
                or_(table.c.next_attempt_at.is_(None), table.c.next_attempt_at <= now),
                or_(table.c.published_at.is_(None), table.c.published_at < stale),
                table.c.run_id.in_(
                    select(_runs.c.run_id).where(one_of(_runs.c.status, ACTIVE_RUN_STATUSES))
                ),
            )
            .values(published_at=now)
            .returning(table.c.run_id, table.c.node_id, table.c.node_type)
        ).all()
    )


def mark_unpublished(session: Session, keys: Sequence[tuple[uuid.UUID, str]]) -> None:
    """published_at = NULL for (run_id, node_id) whose message could not be sent: the sweeper
    republishes such rows at once, where a row merely old waits DUALMCP_PENDING_REPUBLISH_S."""
    session.execute(
        update(table)
        .where(tuple_(table.c.run_id, table.c.node_id).in_(list(keys)))
        .values(published_at=None)
    )


# --- reopen, cancel ------------------------------------------------------------------------


def reopen(session: Session, run_id: uuid.UUID, node_ids: Sequence[str], now: datetime) -> None:
    """Failed or cancelled rows back to pending, for a run resumed from its failed node.

    `attempt` goes on counting (it fences completions, so a late answer from an earlier
    attempt cannot overwrite the new one); the retry policy and the lost-worker cap count
    from here (`prior_attempts`, `redeliveries`). The attempt that ended goes to `attempts`.
    """
    session.execute(
        update(table)
        .where(table.c.run_id == run_id, table.c.node_id.in_(list(node_ids)))
        .values(
            attempts=_with_latest_attempt(table.c.finished_at, table.c.error),
            status="pending",
            prior_attempts=table.c.attempt,
            redeliveries=0,
            error=None,
            output=None,
            lease_expires_at=None,
            next_attempt_at=now,
            published_at=now,
            started_at=None,
            finished_at=None,
        )
    )


#: The run's rows not started yet (pending, or waiting for a retry), cancelled.
CANCEL_UNFINISHED = (
    update(table)
    .where(table.c.run_id == bindparam("p_run_id"), one_of(table.c.status, ("pending", "retrying")))
    .values(status="cancelled", finished_at=_NOW)
)


def cancel_unfinished(session: Session, run_id: uuid.UUID, now: datetime) -> None:
    """Nothing of a cancelled or failed run starts any more; running nodes finish."""
    session.execute(CANCEL_UNFINISHED, {"p_run_id": run_id, "p_now": now})


# --- reads ---------------------------------------------------------------------------------

#: Every node_run's state in a run (workflows with fan-out read it fresh under the run lock).
STATES = select(table.c.node_id, table.c.status, table.c.output).where(
    table.c.run_id == bindparam("p_run_id")
)


def states(session: Session, run_id: uuid.UUID) -> list[Any]:
    return list(session.execute(STATES, {"p_run_id": run_id}).all())


def error_of(session: Session, run_id: uuid.UUID, node_id: str) -> str | None:
    return session.scalar(
        select(table.c.error).where(table.c.run_id == run_id, table.c.node_id == node_id)
    )


def ended(session: Session, run_id: uuid.UUID) -> list[Any]:
    """(node_id, status) of the run's failed and cancelled rows: what a resume looks at."""
    return list(
        session.execute(
            select(table.c.node_id, table.c.status).where(
                table.c.run_id == run_id, one_of(table.c.status, ("failed", "cancelled"))
            )
        ).all()
    )
