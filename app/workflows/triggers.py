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

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.errors import Conflict, DualMCPError
from app.models import TriggerEvent, Workflow, utcnow
from app.workflows.runs import NodeRef, start_run
from app.workflows.store import TriggerTarget

#: Where a key comes from; each source has its own key space, so they never collide.
Source = Literal["webhook", "api", "schedule"]

#: The idempotency_key column's width; longer keys are stored as their SHA-256.
MAX_KEY_LENGTH = 256


class IdempotencyKeyReused(DualMCPError):
    """The key was first used with another body (Stripe's rule: answer 422, start nothing)."""


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
    workflow: Workflow | TriggerTarget | None = None,
) -> TriggerResult:
    """Record the delivery and start its run, or return the run its first delivery started.

    Runs in the caller's one transaction; the caller commits, then publishes `to_publish`.
    Raises IdempotencyKeyReused when the key came before with a different body. The run id is
    chosen first, so the event row names its run from the start (no second write).
    """
    key = stored_key(source, idempotency_key)
    digest = request_hash(raw_body)
    run_id = uuid.uuid4()
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
        session, workflow_id, payload, trigger_event_id=event_id, run_id=run_id, workflow=workflow
    )
    return TriggerResult(started.run_id, duplicate=False, to_publish=started.to_publish)


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
