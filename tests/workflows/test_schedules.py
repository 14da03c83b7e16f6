"""Schedule triggers in the database: one run per due tick, missed ticks fire once, no doubles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.models import TriggerEvent, WorkflowRun, WorkflowSchedule
from app.workflows import save_workflow, set_workflow_status
from app.workflows.schedules import fire_due_schedules

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def scheduled(workflow_id: str = "every-5", cron: str = "*/5 * * * *", **trigger: Any) -> dict:
    return {
        "workflow_id": workflow_id,
        "trigger": {"type": "schedule", "cron": cron, **trigger},
        "nodes": [{"id": "only", "type": "transform", "params": {"values": {"ok": True}}}],
    }


def _schedule(sessions: sessionmaker[Session], workflow_id: str = "every-5") -> WorkflowSchedule:
    with sessions() as session:
        row = session.get(WorkflowSchedule, workflow_id)
        assert row is not None
        return row


def _runs(sessions: sessionmaker[Session], workflow_id: str = "every-5") -> list[WorkflowRun]:
    with sessions() as session:
        query = select(WorkflowRun).where(WorkflowRun.workflow_id == workflow_id)
        return list(session.scalars(query.order_by(WorkflowRun.created_at)))


def _save(sessions: sessionmaker[Session], definition: dict) -> None:
    with sessions.begin() as session:
        save_workflow(session, definition)


def _set_next(
    sessions: sessionmaker[Session], when: datetime, workflow_id: str = "every-5"
) -> None:
    with sessions.begin() as session:
        session.execute(
            update(WorkflowSchedule)
            .where(WorkflowSchedule.workflow_id == workflow_id)
            .values(next_fire_at=when)
        )


def _fire(sessions: sessionmaker[Session], now: datetime):
    with sessions.begin() as session:
        return fire_due_schedules(session, now)


def test_saving_a_schedule_sets_its_next_tick(sessions: sessionmaker) -> None:
    _save(sessions, scheduled())
    row = _schedule(sessions)
    now = datetime.now(UTC)
    assert now < row.next_fire_at <= now + timedelta(minutes=5)
    assert row.next_fire_at.minute % 5 == 0


def test_a_due_tick_starts_one_run_with_the_tick_as_input(sessions: sessionmaker) -> None:
    _save(sessions, scheduled())
    _set_next(sessions, T0)

    fired = _fire(sessions, T0 + timedelta(seconds=3))

    runs = _runs(sessions)
    assert [run.input for run in runs] == [
        {"scheduled_at": "2026-05-04T10:00:00Z", "cron": "*/5 * * * *", "timezone": "UTC"}
    ]
    assert fired.started == [("every-5", str(runs[0].run_id))]
    assert [ref.node_id for ref in fired.to_publish] == ["only"]
    row = _schedule(sessions)
    assert (row.last_fired_at, row.next_fire_at) == (T0, T0 + timedelta(minutes=5))


def test_missed_ticks_fire_once_for_the_latest(sessions: sessionmaker) -> None:
    _save(sessions, scheduled())
    _set_next(sessions, T0)  # beat was down from 10:00 to 11:02: 13 ticks missed

    _fire(sessions, T0 + timedelta(hours=1, minutes=2))

    runs = _runs(sessions)
    assert [run.input["scheduled_at"] for run in runs] == ["2026-05-04T11:00:00Z"]
    assert _schedule(sessions).next_fire_at == T0 + timedelta(hours=1, minutes=5)


def test_a_second_pass_for_the_same_tick_fires_nothing(sessions: sessionmaker) -> None:
    _save(sessions, scheduled())
    _set_next(sessions, T0)
    _fire(sessions, T0 + timedelta(seconds=1))

    again = _fire(sessions, T0 + timedelta(seconds=2))

    assert again.started == [] and len(_runs(sessions)) == 1


def test_a_tick_that_already_started_a_run_is_a_replay(sessions: sessionmaker) -> None:
    """The unique idempotency key backs the row lock: a second beat whose row was put back
    (say, restored from a backup) still starts no second run for the same tick."""
    _save(sessions, scheduled())
    _set_next(sessions, T0)
    _fire(sessions, T0 + timedelta(seconds=1))
    _set_next(sessions, T0)

    again = _fire(sessions, T0 + timedelta(seconds=2))

    assert (again.started, again.replayed) == ([], 1)
    with sessions() as session:
        keys = session.scalars(select(TriggerEvent.idempotency_key)).all()
    assert keys == ["schedule:2026-05-04T10:00:00Z"]


def test_a_paused_workflow_does_not_fire_and_does_not_catch_up(sessions: sessionmaker) -> None:
    _save(sessions, scheduled())
    with sessions.begin() as session:
        set_workflow_status(session, "every-5", "paused")
    _set_next(sessions, T0)
    assert _fire(sessions, T0 + timedelta(minutes=1)).started == []

    with sessions.begin() as session:
        set_workflow_status(session, "every-5", "active")

    assert _schedule(sessions).next_fire_at > datetime.now(UTC)
    assert _runs(sessions) == []


def test_saving_an_unchanged_schedule_keeps_its_next_tick(sessions: sessionmaker) -> None:
    _save(sessions, scheduled())
    _set_next(sessions, T0)

    _save(sessions, {**scheduled(), "name": "renamed"})

    assert _schedule(sessions).next_fire_at == T0


def test_changing_the_cron_counts_from_now(sessions: sessionmaker) -> None:
    _save(sessions, scheduled())
    _set_next(sessions, T0)

    _save(sessions, scheduled(cron="0 * * * *", timezone="Asia/Kolkata"))

    row = _schedule(sessions)
    assert (row.cron, row.timezone) == ("0 * * * *", "Asia/Kolkata")
    assert row.next_fire_at > datetime.now(UTC)
    assert row.next_fire_at.minute == 30  # Kolkata is UTC+5:30


def test_a_workflow_that_stops_being_scheduled_loses_its_schedule(sessions: sessionmaker) -> None:
    _save(sessions, scheduled())
    _save(sessions, {**scheduled(), "trigger": {"type": "manual"}})

    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(WorkflowSchedule)) == 0
