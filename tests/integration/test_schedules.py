"""Schedule triggers through the real beat: a tick missed while beat was down fires once, and a
second beat running at the same time fires nothing more."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from app.models import WorkflowRun, WorkflowSchedule
from app.workflows import save_workflow
from tests.integration.conftest import Stack, finished_run


def test_a_missed_tick_fires_once_even_with_two_beats(stack: Stack) -> None:
    workflow_id = f"scheduled-{time.time_ns()}"
    with stack.sessions.begin() as session:
        save_workflow(
            session,
            {
                "workflow_id": workflow_id,
                "trigger": {"type": "schedule", "cron": "*/5 * * * *", "timezone": "UTC"},
                "nodes": [
                    {
                        "id": "stamp",
                        "type": "transform",
                        "params": {"values": {"at": "{{ trigger.scheduled_at }}"}},
                    }
                ],
            },
        )
    second_beat = stack.start_beat(stack.logs / "beat-2-schedule", name="beat-2")
    try:
        with stack.sessions.begin() as session:  # as if beat had been down for an hour
            session.execute(
                update(WorkflowSchedule)
                .where(WorkflowSchedule.workflow_id == workflow_id)
                .values(next_fire_at=datetime.now(UTC) - timedelta(hours=1))
            )

        def first_run() -> str | None:
            with stack.sessions() as session:
                run_id = session.scalar(
                    select(WorkflowRun.run_id).where(WorkflowRun.workflow_id == workflow_id)
                )
            return str(run_id) if run_id else None

        run = finished_run(stack, stack.wait_for(first_run, 20, what="the scheduled run"))
        time.sleep(2)  # eight more passes of each beat
    finally:
        second_beat.terminate()
        second_beat.wait(timeout=15)

    with stack.sessions() as session:
        runs = session.scalar(select(func.count()).where(WorkflowRun.workflow_id == workflow_id))
        schedule = session.get(WorkflowSchedule, workflow_id)
    assert runs == 1
    assert run["status"] == "succeeded"
    assert schedule is not None and schedule.next_fire_at > datetime.now(UTC)
    assert run["by_node"]["stamp"]["output"]["at"] == run["input"]["scheduled_at"]
