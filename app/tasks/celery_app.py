"""The Celery app and its settings (DESIGN.md: Execution 4 and 7)."""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from app.config import Settings

#: Continuations of runs already under way: served first (a raw chain runs breadth-first under a
#: burst, so every run finishes late).
NODES_QUEUE = "dualmcp.nodes"
#: Entry nodes of new runs.
RUNS_QUEUE = "dualmcp.runs"


def make_celery(settings: Settings) -> Celery:
    celery = Celery("dualmcp", broker=settings.broker_url, include=["app.tasks.nodes"])
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # PostgreSQL has the results
        task_serializer="json",
        accept_content=["json"],
        task_queues=[Queue(NODES_QUEUE), Queue(RUNS_QUEUE)],
        task_default_queue=RUNS_QUEUE,
        broker_transport_options={
            # BRPOP the queues in the order above: continuations before new runs.
            "queue_order_strategy": "priority",
            # Above the longest node timeout, or a slow node is handed to a second worker.
            "visibility_timeout": settings.visibility_timeout,
            "socket_connect_timeout": 2,
        },
        # A broker outage must not hold a web request for long: the node stays pending in
        # PostgreSQL and the sweeper publishes it later (DESIGN.md: Execution 1).
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.1,
            "interval_max": 0.2,
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule={
            "dualmcp-sweeper": {
                "task": "dualmcp.sweep",
                "schedule": settings.sweep_interval_s,
                "options": {"queue": NODES_QUEUE, "expires": settings.sweep_interval_s * 2},
            }
        },
    )
    return celery
