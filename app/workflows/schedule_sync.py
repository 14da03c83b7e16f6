"""A scheduled workflow's `workflow_schedules` row, kept in step with its definition and status.

Apart from firing (app/workflows/schedules.py): saving a workflow needs only the row, while
firing starts runs through the trigger path, which itself reads workflows (store).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.engine.cron import next_tick
from app.engine.schema import TriggerConfig
from app.models import WorkflowSchedule, utcnow


def sync_schedule(
    session: Session, workflow_id: str, trigger: TriggerConfig, now: datetime | None = None
) -> None:
    """Make the workflow's schedule row match its trigger (called when it is saved).

    An unchanged cron and time zone keep their next tick, so saving a new version neither skips
    nor repeats one; a changed one starts counting from now.
    """
    row = session.get(WorkflowSchedule, workflow_id, with_for_update=True)
    if trigger.type != "schedule" or trigger.cron is None:
        if row is not None:
            session.execute(
                delete(WorkflowSchedule).where(WorkflowSchedule.workflow_id == workflow_id)
            )
        return
    now = now or utcnow()
    if row is None:
        session.add(
            WorkflowSchedule(
                workflow_id=workflow_id,
                cron=trigger.cron,
                timezone=trigger.timezone,
                next_fire_at=next_tick(trigger.cron, trigger.timezone, now),
                updated_at=now,
            )
        )
    elif (row.cron, row.timezone) != (trigger.cron, trigger.timezone):
        row.cron, row.timezone = trigger.cron, trigger.timezone
        row.next_fire_at = next_tick(row.cron, row.timezone, now)
        row.updated_at = now
    session.flush()


def restart_schedule(session: Session, workflow_id: str, now: datetime | None = None) -> None:
    """A paused workflow was activated: its next tick is the first after now (the ticks of
    the pause are not made up, as n8n does for inactive workflows)."""
    row = session.get(WorkflowSchedule, workflow_id, with_for_update=True)
    if row is not None:
        row.next_fire_at = next_tick(row.cron, row.timezone, now or utcnow())
        session.flush()
