"""The baseline: a raw Celery chain, with the worker settings of app/tasks/celery_app.py.

    celery -A bench.celery_baseline worker --pool=prefork

Each task does one httpx GET (a pooled client per worker process, as our runtime has) and
passes control to the next task through the chain in its message; results are ignored, as for
our node tasks. The last task of a chain pushes its finish time onto a Redis list, which is how
the harness learns that a chain is done without a result backend.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import httpx
import redis
from celery import Celery
from kombu import Queue

#: The baseline's own queue on the shared broker.
CHAIN_QUEUE = "bench.chain"
#: Redis list of `{"id", "t"}` finish records, one per chain.
DONE_LIST = "bench:chain:done"

BROKER_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:56479/0")


def worker_settings(queue: str) -> dict[str, Any]:
    """The same as make_celery (app/tasks/celery_app.py): nothing turned off to look fast. The
    durable baseline (bench/celery_durable.py) runs with these too, on its own queue."""
    return {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_queues": [Queue(queue)],
        "task_default_queue": queue,
        "broker_transport_options": {
            "queue_order_strategy": "priority",
            "visibility_timeout": 3600,
            "socket_connect_timeout": 2,
        },
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
    }


app = Celery("bench_baseline", broker=BROKER_URL)
app.conf.update(**worker_settings(CHAIN_QUEUE), task_ignore_result=True)

_http: httpx.Client | None = None
_redis: redis.Redis | None = None


def clients() -> tuple[httpx.Client, redis.Redis]:
    """Per-process clients, made on first use (after the prefork fork)."""
    global _http, _redis
    if _http is None or _redis is None:
        _http = httpx.Client(timeout=30, trust_env=False)
        _redis = redis.Redis.from_url(BROKER_URL)
    return _http, _redis


@app.task(name="bench.fetch", ignore_result=True)
def fetch(url: str, chain_id: str, last: bool) -> None:
    http, done = clients()
    http.get(url).raise_for_status()
    if last:
        done.rpush(DONE_LIST, json.dumps({"id": chain_id, "t": time.time()}))
