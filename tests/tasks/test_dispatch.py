"""Node messages are sent by task name through the Celery app they are given (the front end's or
the worker's), to the queue of their kind; a failed send leaves the node marked unpublished."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.models import NodeRun
from app.tasks.celery_app import NODES_QUEUE, RUN_NODE, RUNS_QUEUE, make_celery
from app.tasks.dispatch import Dispatcher
from app.workflows import save_workflow, start_run
from app.workflows.runs import NodeRef


@pytest.fixture
def memory_celery() -> Iterator[Celery]:
    """An app on kombu's in-memory broker, its node queues emptied first."""
    celery = make_celery(Settings(celery_broker_url="memory://localhost//"))
    with celery.connection_for_write() as connection:
        for queue in (NODES_QUEUE, RUNS_QUEUE):
            connection.SimpleQueue(queue, no_ack=True).clear()
    yield celery
    celery.close()


def sent(celery: Celery, queue: str) -> list[tuple[str, list[str]]]:
    """(task name, args) of every message waiting in `queue`, taken off it."""
    messages = []
    with celery.connection_for_read() as connection:
        waiting = connection.SimpleQueue(queue, no_ack=True)
        while waiting.qsize():
            message = waiting.get(timeout=1)
            args, _kwargs, _embed = message.decode()
            messages.append((message.headers["task"], args))
        waiting.close()
    return messages


def test_a_continuation_goes_to_the_nodes_queue_and_an_entry_node_to_the_runs_queue(
    memory_celery: Celery,
) -> None:
    dispatcher = Dispatcher(memory_celery, sessionmaker())  # no failure: no session needed

    dispatcher.publish([NodeRef("run-1", "next"), NodeRef("run-2", "entry", continuation=False)])

    assert sent(memory_celery, NODES_QUEUE) == [(RUN_NODE, ["run-1", "next"])]
    assert sent(memory_celery, RUNS_QUEUE) == [(RUN_NODE, ["run-2", "entry"])]


def test_the_queue_depth_is_unknown_on_a_broker_other_than_redis(memory_celery: Celery) -> None:
    assert Dispatcher(memory_celery, sessionmaker()).queue_depth() is None


def test_a_message_the_broker_refused_leaves_its_node_marked_unpublished(
    pg_sessions: sessionmaker[Session],
) -> None:
    workflow_id = f"dispatch-{uuid.uuid4().hex[:8]}"
    definition = {
        "workflow_id": workflow_id,
        "nodes": [{"id": "t", "type": "transform", "params": {"values": {"v": 1}}}],
    }
    with pg_sessions.begin() as session:
        save_workflow(session, definition)
        started = start_run(session, workflow_id, {})

    def published_at() -> datetime | None:
        with pg_sessions() as session:
            return session.scalar(
                select(NodeRun.published_at).where(NodeRun.run_id == uuid.UUID(started.run_id))
            )

    assert started.to_publish and published_at() is not None
    unreachable = make_celery(Settings(celery_broker_url="redis://127.0.0.1:9/0"))  # discard port
    try:
        Dispatcher(unreachable, pg_sessions).publish(started.to_publish)
    finally:
        unreachable.close()

    assert published_at() is None
