"""Every ref that is published carries its node's type, read from what is at hand (the
definition, the swept row): routing to the slow queue costs no database read (issue 17)."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import update
from sqlalchemy.orm import sessionmaker

from app.config import Settings
from app.models import NodeRun, utcnow
from app.workflows import save_workflow, start_run
from app.workflows.invoke import execute_node
from app.workflows.sweeper import sweep

ASK_THEN_SHAPE = {
    "workflow_id": "ask-then-shape",
    "nodes": [
        {
            "id": "fetch",
            "type": "data_fetch",
            "params": {"url": "http://127.0.0.1:9/refused"},
            "next": "again",
            "retry": {"max_attempts": 1},
            "on_error": "continue",
        },
        {"id": "again", "type": "data_fetch", "params": {"url": "http://127.0.0.1:9/refused"}},
    ],
}


def test_an_entry_node_and_its_successors_carry_their_types(
    sessions: sessionmaker, settings: Settings, http: httpx.Client
) -> None:
    with sessions.begin() as session:
        save_workflow(session, ASK_THEN_SHAPE)
        started = start_run(session, "ask-then-shape", {})
    assert [(ref.node_id, ref.node_type) for ref in started.to_publish] == [("fetch", "data_fetch")]

    # fetch fails and goes on: its successor is published, with its type from the definition
    successors = execute_node(sessions, settings, http, started.to_publish[0])
    assert [(ref.node_id, ref.node_type) for ref in successors] == [("again", "data_fetch")]


def test_the_sweeper_republishes_a_node_with_its_type(
    sessions: sessionmaker, settings: Settings
) -> None:
    with sessions.begin() as session:
        save_workflow(session, ASK_THEN_SHAPE)
        run_id = start_run(session, "ask-then-shape", {}).run_id
    with sessions.begin() as session:
        session.execute(update(NodeRun).values(published_at=utcnow() - timedelta(hours=1)))
        refs = [ref for ref in sweep(session, settings) if ref.run_id == run_id]
    assert [(ref.node_id, ref.node_type) for ref in refs] == [("fetch", "data_fetch")]
