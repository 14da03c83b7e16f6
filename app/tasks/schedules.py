"""Beat's schedule task: start the runs of `schedule` triggers whose tick has come."""

from __future__ import annotations

import logging

from celery import shared_task

from app import metrics
from app.logs import log_context
from app.tasks.celery_app import FIRE_SCHEDULES
from app.tasks.runtime import get_runtime, publish
from app.workflows.schedules import fire_due_schedules

log = logging.getLogger(__name__)


@shared_task(name=FIRE_SCHEDULES, ignore_result=True)
def fire_schedules() -> int:
    """Fire due schedules; return how many runs started. Safe to run on two beats at once."""
    runtime = get_runtime()
    with runtime.sessions.begin() as session:
        fired = fire_due_schedules(session)
    publish(fired.to_publish)  # after the commit
    for workflow_id, run_id in fired.started:
        metrics.record_trigger_accepted("schedule")
        with log_context(workflow_id=workflow_id, run_id=run_id):
            log.info("schedule started run %s of workflow %s", run_id, workflow_id)
    for _ in range(fired.replayed):
        metrics.record_trigger_replayed("schedule")
    return len(fired.started)
