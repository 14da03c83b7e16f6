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

from celery import Celery, Task

from bench.celery_baseline import BROKER_URL, clients, worker_settings

#: The durable baseline's own queue on the shared broker.
DURABLE_QUEUE = "bench.durable"
#: Redis list of `{"id", "t"}` finish records, one per chain.
DURABLE_DONE_LIST = "bench:durable:done"

RESULTS_URL = os.environ.get(
    "DUALMCP_BENCH_RESULTS_URL",
    "postgresql+psycopg://dualmcp:dualmcp@127.0.0.1:55532/dualmcp_celery_results",
)

app = Celery("bench_durable", broker=BROKER_URL)
app.conf.update(
    **worker_settings(DURABLE_QUEUE),
    # Celery's database result backend, as its docs configure it: one row per task in
    # celery_taskmeta (made at setup), with the extended columns.
    result_backend=f"db+{RESULTS_URL}",
    result_extended=True,
    task_ignore_result=False,
)


class DurableFetch(Task):  # type: ignore[type-arg]
    """Reports the end of a chain once the last task's result is stored."""

    def on_success(self, retval: Any, task_id: str, args: tuple[Any, ...], kwargs: Any) -> None:
        _url, chain_id, last = args
        if last:
            _, done = clients()
            done.rpush(DURABLE_DONE_LIST, json.dumps({"id": chain_id, "t": time.time()}))


@app.task(name="bench.durable_fetch", base=DurableFetch)
def durable_fetch(url: str, chain_id: str, last: bool) -> dict[str, int]:
    http, _ = clients()
    response = http.get(url)
    response.raise_for_status()
    return {"status": response.status_code}
