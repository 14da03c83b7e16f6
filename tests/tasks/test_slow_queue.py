"""Nodes that wait on the network go to `dualmcp.slow`, so fast nodes never queue behind them
(issue 17); admission control still counts that backlog."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis
from celery import Celery
from sqlalchemy.orm import sessionmaker

from app.config import Settings
from app.tasks.celery_app import NODES_QUEUE, RUN_NODE, RUNS_QUEUE, SLOW_QUEUE, make_celery
from app.tasks.dispatch import Dispatcher
from app.workflows.runs import NodeRef
from tests.tasks.test_dispatch import sent

QUEUES = (NODES_QUEUE, RUNS_QUEUE, SLOW_QUEUE)
#: The Redis database of the queue-depth test.
OWN_DATABASE = "13"


def memory_celery(**settings: str) -> Celery:
    celery = make_celery(Settings(celery_broker_url="memory://localhost//", **settings))
    with celery.connection_for_write() as connection:
        for queue in QUEUES:
            connection.SimpleQueue(queue, no_ack=True).clear()
    return celery


def test_slow_node_types_go_to_the_slow_queue_and_the_rest_by_kind() -> None:
    celery = memory_celery()
    dispatcher = Dispatcher(celery, sessionmaker())

    dispatcher.publish(
        [
            NodeRef("run-1", "ask", node_type="openai"),
            NodeRef("run-2", "entry", continuation=False, node_type="http_request"),
            NodeRef("run-3", "shape", node_type="transform"),
            NodeRef("run-4", "entry", continuation=False, node_type="conditional"),
            NodeRef("run-5", "unknown"),  # republished without its type: the fast queues
        ]
    )

    assert sent(celery, SLOW_QUEUE) == [
        (RUN_NODE, ["run-1", "ask"]),
        (RUN_NODE, ["run-2", "entry"]),
    ]
    assert sent(celery, NODES_QUEUE) == [
        (RUN_NODE, ["run-3", "shape"]),
        (RUN_NODE, ["run-5", "unknown"]),
    ]
    assert sent(celery, RUNS_QUEUE) == [(RUN_NODE, ["run-4", "entry"])]
    celery.close()


def test_no_slow_types_keeps_every_node_on_the_fast_queues() -> None:
    celery = memory_celery(DUALMCP_SLOW_NODE_TYPES="")
    Dispatcher(celery, sessionmaker()).publish([NodeRef("run-1", "ask", node_type="openai")])

    assert sent(celery, SLOW_QUEUE) == []
    assert sent(celery, NODES_QUEUE) == [(RUN_NODE, ["run-1", "ask"])]
    celery.close()


@pytest.fixture
def redis_celery(redis_url: str) -> Iterator[Celery]:
    """A broker of its own: a Redis database no running worker of the suite consumes (the
    real node queues' names are fixed, so the suite's database could be drained meanwhile)."""
    redis_url = urlsplit(redis_url)._replace(path=f"/{OWN_DATABASE}").geturl()
    client = redis.Redis.from_url(redis_url)
    client.delete(*QUEUES)
    celery = make_celery(Settings(REDIS_URL=redis_url))
    yield celery
    client.delete(*QUEUES)
    client.close()
    celery.close()


def test_the_queue_depth_counts_the_slow_backlog_too(redis_celery: Celery) -> None:
    dispatcher = Dispatcher(redis_celery, sessionmaker())
    dispatcher.publish(
        [NodeRef(f"run-{n}", "ask", continuation=False, node_type="openai") for n in range(3)]
        + [NodeRef("run-9", "shape", node_type="transform")]
    )

    assert dispatcher.queue_depth() == 4
