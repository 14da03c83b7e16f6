"""Two beats at once on the real PostgreSQL: a due tick starts exactly one run."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.models import WorkflowRun, WorkflowSchedule, make_engine, make_session_factory
from app.workflows import save_workflow
from app.workflows.schedules import FiredSchedules, fire_due_schedules
from tests.workflows.test_schedules import scheduled


@pytest.fixture
def pg_sessions(migrated_postgres: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(migrated_postgres)
    yield make_session_factory(engine)
    engine.dispose()


def test_a_second_beat_skips_the_row_the_first_one_holds(pg_sessions: sessionmaker) -> None:
    workflow_id = f"two-beats-{datetime.now(UTC).timestamp():.0f}"
    with pg_sessions.begin() as session:
        save_workflow(session, scheduled(workflow_id))
        session.execute(
            update(WorkflowSchedule)
            .where(WorkflowSchedule.workflow_id == workflow_id)
            .values(next_fire_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    second: list[FiredSchedules] = []

    with pg_sessions.begin() as first_beat:
        first = fire_due_schedules(first_beat)  # holds the row lock until this block commits

        def other_beat() -> None:
            with pg_sessions.begin() as session:
                second.append(fire_due_schedules(session))

        thread = threading.Thread(target=other_beat)
        thread.start()
        thread.join(timeout=10)  # SKIP LOCKED: it must not wait for the first beat
        assert not thread.is_alive()

    assert [wf for wf, _ in first.started] == [workflow_id]
    assert second[0].started == [] and second[0].replayed == 0
    with pg_sessions() as session:
        runs = session.scalar(select(func.count()).where(WorkflowRun.workflow_id == workflow_id))
    assert runs == 1
