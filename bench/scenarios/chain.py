"""Scenario 1, the baselines: a raw Celery chain of 8 tasks, each one httpx GET; and the same
chain with its results stored durably by Celery's database backend (bench/celery_durable.py)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis
import sqlalchemy
from celery import chain
from sqlalchemy.pool import NullPool

from bench.celery_baseline import CHAIN_QUEUE, DONE_LIST, fetch
from bench.celery_durable import DURABLE_DONE_LIST, DURABLE_QUEUE, durable_fetch
from bench.context import Bench
from bench.costs import phase_cost
from bench.definitions import CHAIN_LENGTH
from bench.stack import BenchError
from bench.stats import percentile, rounded, summarize_ms

#: Longest wait for one chain to finish.
CHAIN_TIMEOUT_S = 10


def _timed_chains(
    bench: Bench, task: Any, queue: str, done_list: str, groups: tuple[str, ...]
) -> tuple[float, dict[str, Any]]:
    """Warm up, then run `serial_runs` chains of `task` one after another: the p50 latency of
    a chain per task (ms), and the chain's latencies and cost per task over `groups`."""
    done = redis.Redis.from_url(bench.stack.redis_url)
    done.delete(done_list)

    def one_chain() -> float:
        chain_id = uuid.uuid4().hex
        steps = [
            task.si(bench.stack.echo_url, chain_id, index == CHAIN_LENGTH - 1)
            for index in range(CHAIN_LENGTH)
        ]
        sent = time.time()
        chain(*steps).apply_async(queue=queue)
        popped = done.blpop([done_list], timeout=CHAIN_TIMEOUT_S)
        if popped is None:
            raise BenchError(f"a chain on {queue} did not finish in {CHAIN_TIMEOUT_S}s")
        record = json.loads(popped[1])
        if record["id"] != chain_id:
            raise BenchError(f"chains on {queue} finished out of order")
        return float(record["t"]) - sent

    for _ in range(bench.plan.warmup):
        one_chain()
    before = bench.reading(tasks=False)
    latencies = [one_chain() for _ in range(bench.plan.serial_runs)]
    after = bench.reading(tasks=False)

    cost = phase_cost(before, after, len(latencies) * CHAIN_LENGTH, "task", groups=groups)
    p50 = percentile(latencies, 50)
    assert p50 is not None
    details = {
        "chain_latency": summarize_ms(latencies),
        "tasks_per_chain": CHAIN_LENGTH,
        "cost_per_task": cost,
    }
    return p50 * 1000 / CHAIN_LENGTH, details


def raw_celery_chain(bench: Bench) -> None:
    """p50 latency of a chain, per task; CPU per task of the baseline worker (and Redis)."""
    ms, details = _timed_chains(bench, fetch, CHAIN_QUEUE, DONE_LIST, ("baseline", "redis"))
    bench.metrics["celery_chain_ms_per_task"] = rounded(ms, 3)
    bench.metrics["celery_chain_cpu_ms_per_task"] = details["cost_per_task"]["cpu_ms_per_unit"]
    bench.details["celery_chain"] = details


def durable_celery_chain(bench: Bench) -> None:
    """The same with every task's result committed to PostgreSQL (issue 17, section 3): p50
    latency per task, CPU per task of its worker, PostgreSQL and Redis (as for our nodes)."""
    ms, details = _timed_chains(
        bench, durable_fetch, DURABLE_QUEUE, DURABLE_DONE_LIST, ("durable", "postgres", "redis")
    )
    sent = (bench.plan.warmup + bench.plan.serial_runs) * CHAIN_LENGTH
    stored = _stored_results(bench.stack.results_url)
    if stored < sent:
        raise BenchError(f"the durable chain stored {stored} results for {sent} tasks")
    bench.metrics["durable_chain_ms_per_task"] = rounded(ms, 3)
    bench.metrics["durable_chain_cpu_ms_per_task"] = details["cost_per_task"]["cpu_ms_per_unit"]
    bench.details["durable_chain"] = {**details, "results_stored": stored}


def _stored_results(results_url: str) -> int:
    """Successful task results in the durable baseline's database (Celery's celery_taskmeta)."""
    engine = sqlalchemy.create_engine(results_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            query = "SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'"
            return int(connection.execute(sqlalchemy.text(query)).scalar_one())
    finally:
        engine.dispose()
