"""Schedule triggers: `{"type": "schedule", "cron": "*/5 * * * *", "timezone": "UTC"}`.

`workflow_schedules` holds each scheduled workflow's next tick (kept in step with the workflow by
app/workflows/schedule_sync.py). Beat's task calls `fire_due_schedules`, which claims due rows
(FOR UPDATE SKIP LOCKED), starts one run per row through `accept_trigger` with the idempotency
key `schedule:<tick>`, and moves `next_fire_at` past now in the same transaction. So two beats
never fire a tick twice (the row lock, and the unique key behind it), and ticks missed while
beat was down fire once, for the latest of them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.engine.cron import latest_tick, next_tick
from app.errors import DualMCPError
from app.models import Workflow, WorkflowSchedule, utcnow
from app.workflows.runs import NodeRef
from app.workflows.triggers import accept_trigger

log = logging.getLogger(__name__)

#: Rows claimed per pass; the rest wait for the next pass (a few seconds later).
BATCH = 100


@dataclass
class FiredSchedules:
    """What one pass did; publish `to_publish` after the caller commits."""

    to_publish: list[NodeRef] = field(default_factory=list)
    #: (workflow_id, run_id) of each new run.
    started: list[tuple[str, str]] = field(default_factory=list)
    #: Ticks that had already started a run (another beat got there first).
    replayed: int = 0


def fire_due_schedules(session: Session, now: datetime | None = None) -> FiredSchedules:
    """Start a run for every active workflow whose next tick has come; one run per row, for
    the latest due tick however many were missed. Runs in the caller's transaction."""
    now = now or utcnow()
    rows = session.scalars(
        select(WorkflowSchedule)
        .join(Workflow, Workflow.workflow_id == WorkflowSchedule.workflow_id)
        .where(WorkflowSchedule.next_fire_at <= now, Workflow.status == "active")
        .order_by(WorkflowSchedule.next_fire_at)
        .limit(BATCH)
        .with_for_update(skip_locked=True, of=WorkflowSchedule)
    ).all()
    fired = FiredSchedules()
    for row in rows:
        tick = latest_tick(row.cron, row.timezone, now)
        if tick > row.next_fire_at:
            log.info(
                "schedule of workflow %s missed ticks since %s; firing once, for %s",
                row.workflow_id,
                row.next_fire_at.isoformat(),
                tick.isoformat(),
                extra={"workflow_id": row.workflow_id},
            )
        _fire(session, row, tick, fired)
        row.last_fired_at = tick
        row.next_fire_at = next_tick(row.cron, row.timezone, now)
        row.updated_at = now
    session.flush()
    return fired


def _fire(session: Session, row: WorkflowSchedule, tick: datetime, fired: FiredSchedules) -> None:
    scheduled_at = tick.isoformat().replace("+00:00", "Z")
    payload = {"scheduled_at": scheduled_at, "cron": row.cron, "timezone": row.timezone}
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    try:
        with session.begin_nested():  # one broken workflow must not hold back the others
            result = accept_trigger(
                session, row.workflow_id, scheduled_at, body, payload, source="schedule"
            )
    except DualMCPError as exc:
        log.warning(
            "schedule of workflow %s could not start a run: %s",
            row.workflow_id,
            exc,
            extra={"workflow_id": row.workflow_id},
        )
        return
    if result.duplicate:
        fired.replayed += 1
        return
    fired.to_publish += result.to_publish
    fired.started.append((row.workflow_id, result.run_id))
