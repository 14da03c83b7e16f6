"""Accepting a trigger exactly once per idempotency key (DESIGN.md: Execution 1, idempotency).

The unique (workflow_id, idempotency_key) index is the arbiter: the first delivery's INSERT wins
and starts the run in the same transaction; a concurrent copy's `ON CONFLICT DO NOTHING` waits
for the winner's commit on PostgreSQL, then reads the committed row (READ COMMITTED gives every
statement a fresh snapshot) and answers with the first run. Keys are never deleted here, so the
"kept at least 24 h" promise holds.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from sqlalchemy import Integer, String, Table, Uuid, bindparam, exists, insert, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.errors import Conflict, DualMCPError
from app.models import NodeRun, TriggerEvent, Workflow, WorkflowRun, is_postgresql, utcnow
from app.models.base import UTCDateTime
from app.workflows.runs import NodeRef, start_run
from app.workflows.store import TriggerTarget, get_definition, get_trigger_target

#: Where a key comes from; each source has its own key space, so they never collide. It is
#: also the run's `source`.
Source = Literal["webhook", "api", "schedule", "mcp", "agent"]

#: The idempotency_key column's width; longer keys are stored as their SHA-256.
MAX_KEY_LENGTH = 256


class IdempotencyKeyReused(DualMCPError):
    """The key was first used with another body (Stripe's rule: answer 422, start nothing)."""


class WorkflowChanged(Conflict):
    """The workflow changed (saved, paused, re-keyed) after the target passed in was read;
    nothing was written. Read the target again and decide afresh."""


@dataclass(frozen=True)
class TriggerResult:
    run_id: str
    #: True when the key was seen before: `run_id` is the first delivery's run.
    duplicate: bool
    #: Node messages to publish after the caller commits (empty for a duplicate).
    to_publish: list[NodeRef] = field(default_factory=list)


def accept_trigger(
    session: Session,
    workflow_id: str,
    idempotency_key: str,
    raw_body: bytes,
    payload: Any,
    *,
    source: Source = "webhook",
    workflow: TriggerTarget | None = None,
    origin: dict[str, Any] | None = None,
) -> TriggerResult:
    """Record the delivery and start its run, or return the run its first delivery started.

    Runs in the caller's one transaction; the caller commits, then publishes `to_publish`.
    Raises IdempotencyKeyReused when the key came before with a different body. The run id is
    chosen first, so the event row names its run from the start (no second write). On
    PostgreSQL `workflow` may be a remembered copy: WorkflowChanged says it was stale.
    """
    key = stored_key(source, idempotency_key)
    digest = request_hash(raw_body)
    run_id = uuid.uuid4()
    if is_postgresql(session):
        return _accept_in_one_statement(
            session, workflow_id, key, digest, payload, run_id, workflow, source, origin
        )
    event_id = session.scalar(
        _insert_for(session),
        {
            "workflow_id": workflow_id,
            "idempotency_key": key,
            "request_hash": digest,
            "payload": payload,
            "received_at": utcnow(),
            "run_id": run_id,
        },
    )
    if event_id is None:
        return _first_delivery(session, workflow_id, key, digest)
    started = start_run(
        session,
        workflow_id,
        payload,
        trigger_event_id=event_id,
        run_id=run_id,
        workflow=workflow,
        source=source,
        origin=origin,
    )
    return TriggerResult(started.run_id, duplicate=False, to_publish=started.to_publish)


def _accept_in_one_statement(
    session: Session,
    workflow_id: str,
    key: str,
    digest: str,
    payload: Any,
    run_id: uuid.UUID,
    workflow: TriggerTarget | None,
    source: str,
    origin: dict[str, Any] | None,
) -> TriggerResult:
    """PostgreSQL: event, run and entry node_run in one statement (data-modifying CTEs), so on
    an autocommit connection one round trip records the trigger durably. A repeated key
    inserts nothing (the event's ON CONFLICT DO NOTHING feeds the other two inserts), nor does
    a target that is no longer current (WorkflowChanged): the statement checks the row's
    version, status and updated_at, so the caller may pass a remembered copy."""
    target = workflow or get_trigger_target(session, workflow_id)
    if target.status != "active":
        raise Conflict(f"workflow {workflow_id!r} is {target.status}")
    definition = get_definition(session, workflow_id, target.version)
    entry = definition.node(definition.entry_id)
    written = session.execute(
        _ACCEPT_TRIGGER,
        {
            "p_workflow_id": workflow_id,
            "p_key": key,
            "p_hash": digest,
            "p_payload": payload,
            "p_now": utcnow(),
            "p_run_id": run_id,
            "p_version": target.version,
            "p_updated_at": target.updated_at,
            "p_entry_id": entry.id,
            "p_entry_type": entry.type,
            "p_source": source,
            "p_origin": origin,
        },
    ).one()
    if not written.current:
        raise WorkflowChanged(f"workflow {workflow_id!r} changed while the trigger was accepted")
    if written.event_id is None:
        return _first_delivery(session, workflow_id, key, digest)
    entry_ref = NodeRef(str(run_id), entry.id, continuation=False)
    return TriggerResult(str(run_id), duplicate=False, to_publish=[entry_ref])


def request_hash(raw_body: bytes) -> str:
    return hashlib.sha256(raw_body).hexdigest()


def stored_key(source: Source, idempotency_key: str) -> str:
    """`<source>:<key>`, or `<source>:sha256:<hex>` when the key would not fit the column."""
    key = f"{source}:{idempotency_key}"
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return f"{source}:sha256:" + hashlib.sha256(idempotency_key.encode()).hexdigest()


def _first_delivery(session: Session, workflow_id: str, key: str, digest: str) -> TriggerResult:
    # A new statement, so under READ COMMITTED it sees the row the conflicting insert waited on.
    first = session.execute(
        select(TriggerEvent.request_hash, TriggerEvent.run_id).where(
            TriggerEvent.workflow_id == workflow_id, TriggerEvent.idempotency_key == key
        )
    ).one_or_none()
    if first is None or first.run_id is None:
        # Only if the row vanished (or is not committed yet) between the two statements.
        raise Conflict("a delivery with this idempotency key is still being processed; retry")
    if first.request_hash != digest:
        raise IdempotencyKeyReused(
            "this idempotency key was already used with a different request body"
        )
    return TriggerResult(str(first.run_id), duplicate=True)


def _insert_for(session: Session) -> Any:
    """The dialect's INSERT ... ON CONFLICT DO NOTHING RETURNING id, built once per dialect
    (PostgreSQL and SQLite alike; building it per request showed in the front end's profile)."""
    dialect = session.get_bind().dialect.name
    statement = _inserts.get(dialect)
    if statement is None:
        base: Any
        if dialect == "postgresql":
            base = postgresql.insert(_trigger_events)
        elif dialect == "sqlite":
            base = sqlite.insert(_trigger_events)
        else:
            raise NotImplementedError(
                f"idempotent triggers need PostgreSQL or SQLite, not {dialect}"
            )
        statement = base.on_conflict_do_nothing(
            index_elements=["workflow_id", "idempotency_key"]
        ).returning(_trigger_events.c.id)
        _inserts[dialect] = statement
    return statement


_trigger_events = cast(Table, TriggerEvent.__table__)
_inserts: dict[str, Any] = {}


def _accept_trigger_statement() -> Any:
    runs, node_runs = cast(Table, WorkflowRun.__table__), cast(Table, NodeRun.__table__)
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
        postgresql.insert(_trigger_events)
        .from_select(
            ["workflow_id", "idempotency_key", "request_hash", "received_at", "payload", "run_id"],
            select(
                current.c.workflow_id,
                bindparam("p_key", type_=String()),
                bindparam("p_hash", type_=String()),
                now,
                bindparam("p_payload", type_=_trigger_events.c.payload.type),
                run_id,
            ),
        )
        .on_conflict_do_nothing(index_elements=["workflow_id", "idempotency_key"])
        .returning(_trigger_events.c.id, _trigger_events.c.payload)
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
    entry = insert(node_runs).from_select(
        [
            "run_id",
            "node_id",
            "node_type",
            "status",
            "attempt",
            "redeliveries",
            "next_attempt_at",
            "published_at",
        ],
        select(
            run.c.run_id,
            bindparam("p_entry_id", type_=String()),
            bindparam("p_entry_type", type_=String()),
            literal("pending"),
            literal(0),
            literal(0),
            now,
            now,
        ),
    )
    return select(
        select(event.c.id).scalar_subquery().label("event_id"),
        exists(select(current.c.workflow_id)).label("current"),
    ).add_cte(run, entry.cte("entry"))


#: trigger_event + workflow_run (queued) + entry node_run (pending), written only while the
#: workflow row is as read (`current`): `event_id` is None when the key was seen before or the
#: row changed (then nothing was written).
_ACCEPT_TRIGGER = _accept_trigger_statement()
