"""The durable baseline: the raw Celery chain, its results stored by Celery's database backend.

    celery -A bench.celery_durable worker --pool=prefork

What a user would build instead of our nodes to keep each step's outcome (issue 17, section 3):
the same task as bench/celery_baseline.py (one httpx GET) and the same worker settings, with
results not ignored but written to PostgreSQL through `db+postgresql+psycopg://`, extended
(name, args, worker, queue), in a database of the bench's own (DUALMCP_BENCH_RESULTS_URL, made
by bench/stack.py) so the app's tables are not touched. Celery sends the next task of a chain,
then stores the result; the last task's finish record is pushed from `on_success`, which runs
after its result is committed, so a chain's latency includes every commit.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import httpx
import redis
from celery import Celery, Task
from kombu import Queue

#: The durable baseline's own queue on the shared broker.
DURABLE_QUEUE = "bench.durable"
#: Redis list of `{"id", "t"}` finish records, one per chain.
DURABLE_DONE_LIST = "bench:durable:done"

BROKER_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:56479/0")
RESULTS_URL = os.environ.get(
    "DUALMCP_BENCH_RESULTS_URL",
    "postgresql+psycopg://dualmcp:dualmcp@127.0.0.1:55532/dualmcp_celery_results",
)

app = Celery("bench_durable", broker=BROKER_URL)
app.conf.update(
    # The same as bench/celery_baseline.py (and make_celery), except the results.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    task_queues=[Queue(DURABLE_QUEUE)],
    task_default_queue=DURABLE_QUEUE,
    broker_transport_options={
        "queue_order_strategy": "priority",
        "visibility_timeout": 3600,
        "socket_connect_timeout": 2,
    },
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    # Celery's database result backend, as its docs configure it: one row per task in
    # celery_taskmeta (made at setup), with the extended columns.
    result_backend=f"db+{RESULTS_URL}",
    result_extended=True,
    task_ignore_result=False,
)

_http: httpx.Client | None = None
_redis: redis.Redis | None = None


def _clients() -> tuple[httpx.Client, redis.Redis]:
    """Per-process clients, made on first use (after the prefork fork)."""
    global _http, _redis
    if _http is None or _redis is None:
        _http = httpx.Client(timeout=30, trust_env=False)
        _redis = redis.Redis.from_url(BROKER_URL)
    return _http, _redis


class DurableFetch(Task):
    """Reports the end of a chain once the last task's result is stored."""

    def on_success(self, retval: Any, task_id: str, args: tuple[Any, ...], kwargs: Any) -> None:
        _url, chain_id, last = args
        if last:
            _, done = _clients()
            done.rpush(DURABLE_DONE_LIST, json.dumps({"id": chain_id, "t": time.time()}))


@app.task(name="bench.durable_fetch", base=DurableFetch)
def durable_fetch(url: str, chain_id: str, last: bool) -> dict[str, int]:
    http, _ = _clients()
    response = http.get(url)
    response.raise_for_status()
    return {"status": response.status_code}
