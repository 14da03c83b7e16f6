"""Accepting a trigger exactly once per idempotency key (DESIGN.md: Execution 1, idempotency).

`accept_trigger` holds the rules, in this order (issue 14):

1. a known delivery: the same key answers with the first run (`duplicate`), or, with another
   body, IdempotencyKeyReused (Stripe's 422), whatever became of the workflow since;
2. the workflow's state: paused is a Conflict (409), and nothing is written;
3. the checks that do not depend on the signature (the input schema: InputInvalid, 422);
4. then the write: trigger_event + run (queued) + entry node_run (pending), one transaction.

A refusal by rule 2 or 3 looks the key up first, so rule 1 wins; the accepted path pays
nothing for that. The SQL is chosen once per database, as Prefect chooses its query components
per dialect: on PostgreSQL one statement (`_OneStatement`), which also checks that the
workflow row is as the caller's copy says, so a remembered copy (store.py
`remembered_trigger_target`) spares the read; anywhere else the portable statements
(`_Statements`) on a fresh read. Anything a remembered copy refuses is decided again on a fresh
read, so a stale copy never turns away what the current workflow accepts.

The unique (workflow_id, idempotency_key) index is the arbiter: the first delivery's INSERT wins
and starts the run in the same transaction; a concurrent copy's `ON CONFLICT DO NOTHING` waits
for the winner's commit on PostgreSQL, then reads the committed row (READ COMMITTED gives every
statement a fresh snapshot) and answers with the first run. Keys are never deleted here, so the
"kept at least 24 h" promise holds.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from app.engine.schema import WorkflowDefinition
from app.engine.tool_input import tool_input_problems
from app.errors import Conflict, DualMCPError
from app.models import TriggerEvent, WorkflowRun, utcnow
from app.workflows import statements as sql
from app.workflows.runs import NodeRef, start_run, with_request_id
from app.workflows.store import (
    TriggerTarget,
    forget_trigger_target,
    get_definition,
    get_trigger_target,
    remembered_trigger_target,
)

#: Where a key comes from; each source has its own key space, so they never collide. It is
#: also the run's `source`.
Source = Literal["webhook", "api", "schedule", "mcp", "agent"]

#: The idempotency_key column's width; longer keys are stored as their SHA-256.
MAX_KEY_LENGTH = 256


class IdempotencyKeyReused(DualMCPError):
    """The key was first used with another body (Stripe's rule: answer 422, start nothing)."""


class WorkflowChanged(Conflict):
    """The workflow changed (saved, paused, re-keyed) between the read of it and the write;
    nothing was written. Sending again decides afresh."""


class InputInvalid(DualMCPError):
    """The run's input breaks the workflow's input schema; `problems` lists every one."""

    def __init__(self, problems: list[Any]) -> None:
        self.problems = problems
        fields = ", ".join(dict.fromkeys(problem.path or "(body)" for problem in problems))
        super().__init__(f"invalid fields: {fields}")


@dataclass(frozen=True)
class TriggerResult:
    run_id: str
    #: True when the key was seen before: `run_id` is the first delivery's run.
    duplicate: bool
    #: Node messages to publish after the caller commits (empty for a duplicate).
    to_publish: list[NodeRef] = field(default_factory=list)
    #: The run's status: queued for a new run; a duplicate's run as it is now (issue 15).
    status: str = "queued"


@dataclass(frozen=True)
class Delivery:
    """A trigger as its sender made it: the idempotency key, the exact bytes, the payload."""

    idempotency_key: str
    raw_body: bytes
    payload: Any


class Verify(Protocol):
    """What a sender's signature vouches for, checked against a workflow's trigger settings:
    the Delivery, or None when it is not signed for `target`. `final` is False for a
    remembered copy, which may be stale: the refusal is then not final (nor logged) and
    accept_trigger asks again with a fresh read; with `final` a refusal raises."""

    def __call__(self, target: TriggerTarget, *, final: bool) -> Delivery | None: ...


#: A check that does not depend on the signature (rule 3): raises a DualMCPError to refuse
#: the payload for the definition its run would start with.
Check = Callable[[WorkflowDefinition, Any], None]


def input_schema(prefix: str) -> Check:
    """Rule 3 for a workflow with a `tool` block: InputInvalid listing every problem, with
    paths under `prefix` ("" for a webhook body, "input" for execute's body)."""

    def check(definition: WorkflowDefinition, payload: Any) -> None:
        if definition.tool is None:
            return
        problems = tool_input_problems(definition.tool, payload, prefix=prefix)
        if problems:
            raise InputInvalid(problems)

    return check


def accept_trigger(
    session: Session,
    workflow_id: str,
    idempotency_key: str | None = None,
    raw_body: bytes = b"",
    payload: Any = None,
    *,
    source: Source = "webhook",
    origin: dict[str, Any] | None = None,
    verify: Verify | None = None,
    check: Check | None = None,
) -> TriggerResult:
    """Record the delivery and start its run, or return the run its first delivery started.

    The delivery is `idempotency_key`, `raw_body` and `payload` when the caller knows them
    (execute, schedules, tool calls), or what `verify` makes of the request for the workflow
    (a signed webhook). Runs in the caller's session (on PostgreSQL it may commit each
    statement); the caller commits, then publishes `to_publish`. Raises as the rules above
    say: IdempotencyKeyReused, Conflict, NotFound, or what `check` raises.
    """
    if verify is None:
        if idempotency_key is None:
            raise TypeError("accept_trigger needs an idempotency key or a verify function")
        verify = _known(Delivery(idempotency_key, raw_body, payload))
    writer = _writer_for(session)
    copy = remembered_trigger_target(session, workflow_id) if writer.checks_copy else None
    if copy is not None:
        try:
            return _accept(session, writer, copy, verify, check, source, origin, final=False)
        except _CopyRefused:
            forget_trigger_target(session, workflow_id)
    target = get_trigger_target(session, workflow_id)
    return _accept(session, writer, target, verify, check, source, origin, final=True)


class _CopyRefused(Exception):
    """A remembered copy of the workflow refused the delivery: decide again on a fresh read."""


def _accept(
    session: Session,
    writer: _Writer,
    target: TriggerTarget,
    verify: Verify,
    check: Check | None,
    source: Source,
    origin: dict[str, Any] | None,
    *,
    final: bool,
) -> TriggerResult:
    """The rules against one target: fresh (`final`), or a remembered copy."""
    delivery = verify(target, final=final)
    if delivery is None:
        if final:
            raise TypeError("verify returned None for a fresh target; it must raise instead")
        raise _CopyRefused
    key = stored_key(source, delivery.idempotency_key)
    digest = request_hash(delivery.raw_body)
    if source == "webhook":  # the run names its delivery (GET /api/runs/<id>: delivery_id)
        origin = {**(origin or {}), "delivery_id": delivery.idempotency_key}
    origin = with_request_id(origin)
    refusal = _refusal(session, target, delivery.payload, check)
    if refusal is not None:
        if not final:
            raise _CopyRefused  # paused or stricter as this process knew it: maybe not now
        known = _known_delivery(session, target.workflow_id, key, digest)
        if known is not None:
            return known  # rule 1 before rules 2 and 3
        raise refusal
    try:
        written = writer.write(session, target, key, digest, delivery.payload, source, origin)
    except WorkflowChanged:
        if final:
            raise
        raise _CopyRefused from None
    if written is None:
        return _first_delivery(session, target.workflow_id, key, digest)
    return written


def _refusal(
    session: Session, target: TriggerTarget, payload: Any, check: Check | None
) -> DualMCPError | None:
    """What rules 2 and 3 say against this delivery, or None when it may be written."""
    if target.status != "active":
        return Conflict(f"workflow {target.workflow_id!r} is {target.status}")
    if check is not None:
        try:
            check(get_definition(session, target.workflow_id, target.version), payload)
        except DualMCPError as exc:
            return exc
    return None


def _known(delivery: Delivery) -> Verify:
    """A delivery whose key and body the caller already knows, whatever the workflow says."""

    def verify(target: TriggerTarget, *, final: bool) -> Delivery | None:
        return delivery

    return verify


def request_hash(raw_body: bytes) -> str:
    return hashlib.sha256(raw_body).hexdigest()


def stored_key(source: Source, idempotency_key: str) -> str:
    """`<source>:<key>`, or `<source>:sha256:<hex>` when the key would not fit the column."""
    key = f"{source}:{idempotency_key}"
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return f"{source}:sha256:" + hashlib.sha256(idempotency_key.encode()).hexdigest()


#: The first delivery of a key, with its run's status as of now: a repeat answers it, at the
#: price of a join in the read a repeat makes anyway.
_FIRST_DELIVERY = (
    select(TriggerEvent.request_hash, TriggerEvent.run_id, WorkflowRun.status.label("run_status"))
    .outerjoin(WorkflowRun, WorkflowRun.run_id == TriggerEvent.run_id)
    .where(
        TriggerEvent.workflow_id == bindparam("p_workflow_id"),
        TriggerEvent.idempotency_key == bindparam("p_key"),
    )
)


def _known_delivery(
    session: Session, workflow_id: str, key: str, digest: str
) -> TriggerResult | None:
    """The first delivery's run when the key is known (IdempotencyKeyReused for another
    body); None when it is not."""
    first = session.execute(_FIRST_DELIVERY, {"p_workflow_id": workflow_id, "p_key": key}).first()
    if first is None:
        return None
    if first.run_id is None:
        raise Conflict("a delivery with this idempotency key is still being processed; retry")
    if first.request_hash != digest:
        raise IdempotencyKeyReused(
            "this idempotency key was already used with a different request body"
        )
    return TriggerResult(str(first.run_id), duplicate=True, status=first.run_status or "queued")


def _first_delivery(session: Session, workflow_id: str, key: str, digest: str) -> TriggerResult:
    # A new statement, so under READ COMMITTED it sees the row the conflicting insert waited on.
    known = _known_delivery(session, workflow_id, key, digest)
    if known is None:
        # Only if the row vanished (or is not committed yet) between the two statements.
        raise Conflict("a delivery with this idempotency key is still being processed; retry")
    return known


# --- the write, per database ---------------------------------------------------------------


class _Writer(Protocol):
    #: Whether the write checks that the target is still current (so a copy may be passed).
    checks_copy: bool

    def write(
        self,
        session: Session,
        target: TriggerTarget,
        key: str,
        digest: str,
        payload: Any,
        source: Source,
        origin: dict[str, Any] | None,
    ) -> TriggerResult | None:
        """The new run; None when the key is known (nothing written); WorkflowChanged when
        the workflow row is no longer as `target` says (nothing written)."""


class _OneStatement:
    """PostgreSQL: event, run and entry node_run in one statement (data-modifying CTEs), so on
    an autocommit connection one round trip records the trigger durably. A known key inserts
    nothing (the event's ON CONFLICT DO NOTHING feeds the other two inserts), nor does a
    target that is no longer current: the statement checks the row's version, status and
    updated_at."""

    checks_copy = True

    def write(
        self,
        session: Session,
        target: TriggerTarget,
        key: str,
        digest: str,
        payload: Any,
        source: Source,
        origin: dict[str, Any] | None,
    ) -> TriggerResult | None:
        definition = get_definition(session, target.workflow_id, target.version)
        entry = definition.node(definition.entry_id)
        run_id = uuid.uuid4()  # chosen first: the event row names its run from the start
        written = session.execute(
            sql.ACCEPT_TRIGGER,
            {
                "p_workflow_id": target.workflow_id,
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
            raise WorkflowChanged(
                f"workflow {target.workflow_id!r} changed while the trigger was accepted"
            )
        if written.event_id is None:
            return None
        entry_ref = NodeRef(str(run_id), entry.id, continuation=False, node_type=entry.type)
        return TriggerResult(str(run_id), duplicate=False, to_publish=[entry_ref])


class _Statements:
    """Any database (SQLite): the event's INSERT ... ON CONFLICT DO NOTHING RETURNING id, then
    the run and its entry node (start_run), in the caller's transaction, on a target read in
    it."""

    checks_copy = False

    def __init__(self, dialect: Any) -> None:
        # Built once per dialect: building a statement costs more CPU than running it.
        self._insert_event = (
            dialect.insert(_trigger_events)
            .on_conflict_do_nothing(index_elements=["workflow_id", "idempotency_key"])
            .returning(_trigger_events.c.id)
        )

    def write(
        self,
        session: Session,
        target: TriggerTarget,
        key: str,
        digest: str,
        payload: Any,
        source: Source,
        origin: dict[str, Any] | None,
    ) -> TriggerResult | None:
        run_id = uuid.uuid4()
        event_id = session.scalar(
            self._insert_event,
            {
                "workflow_id": target.workflow_id,
                "idempotency_key": key,
                "request_hash": digest,
                "payload": payload,
                "received_at": utcnow(),
                "run_id": run_id,
            },
        )
        if event_id is None:
            return None
        started = start_run(
            session,
            target.workflow_id,
            payload,
            trigger_event_id=event_id,
            run_id=run_id,
            workflow=target,
            source=source,
            origin=origin,
        )
        return TriggerResult(started.run_id, duplicate=False, to_publish=started.to_publish)


def _writer_for(session: Session) -> _Writer:
    """The database's way to write a trigger, chosen once per dialect."""
    dialect = session.get_bind().dialect.name
    writer = _writers.get(dialect)
    if writer is None:
        raise NotImplementedError(f"idempotent triggers need PostgreSQL or SQLite, not {dialect}")
    return writer


_trigger_events = cast(Table, TriggerEvent.__table__)


_writers: dict[str, _Writer] = {
    "postgresql": _OneStatement(),
    "sqlite": _Statements(sqlite),
}
