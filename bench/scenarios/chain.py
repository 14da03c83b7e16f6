"""Scenario 1, the baseline: a raw Celery chain of 8 tasks, each one httpx GET."""

from __future__ import annotations

import json
import time
import uuid

import redis
from celery import chain

from bench.celery_baseline import CHAIN_QUEUE, DONE_LIST, fetch
from bench.context import Bench
from bench.costs import phase_cost
from bench.definitions import CHAIN_LENGTH
from bench.stack import BenchError
from bench.stats import percentile, rounded, summarize_ms

#: Longest wait for one chain to finish.
CHAIN_TIMEOUT_S = 10


def raw_celery_chain(bench: Bench) -> None:
    """p50 latency of a chain, per task; CPU per task of the baseline worker (and Redis)."""
    done = redis.Redis.from_url(bench.stack.redis_url)
    done.delete(DONE_LIST)

    def one_chain() -> float:
        chain_id = uuid.uuid4().hex
        steps = [
            fetch.si(bench.stack.echo_url, chain_id, index == CHAIN_LENGTH - 1)
            for index in range(CHAIN_LENGTH)
        ]
        sent = time.time()
        chain(*steps).apply_async(queue=CHAIN_QUEUE)
        popped = done.blpop([DONE_LIST], timeout=CHAIN_TIMEOUT_S)
        if popped is None:
            raise BenchError(f"a baseline chain did not finish in {CHAIN_TIMEOUT_S}s")
        record = json.loads(popped[1])
        if record["id"] != chain_id:
            raise BenchError("baseline chains finished out of order")
        return float(record["t"]) - sent

    for _ in range(bench.plan.warmup):
        one_chain()
    before = bench.reading(tasks=False)
    latencies = [one_chain() for _ in range(bench.plan.serial_runs)]
    after = bench.reading(tasks=False)

    tasks = len(latencies) * CHAIN_LENGTH
    cost = phase_cost(before, after, tasks, "task", groups=("baseline", "redis"))
    p50 = percentile(latencies, 50)
    assert p50 is not None
    bench.metrics["celery_chain_ms_per_task"] = rounded(p50 * 1000 / CHAIN_LENGTH, 3)
    bench.metrics["celery_chain_cpu_ms_per_task"] = cost["cpu_ms_per_unit"]
    bench.details["celery_chain"] = {
        "chain_latency": summarize_ms(latencies),
        "tasks_per_chain": CHAIN_LENGTH,
        "cost_per_task": cost,
    }
