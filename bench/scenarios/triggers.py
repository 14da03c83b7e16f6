"""Signed triggers through the load generator, shared by the scenarios that fire them.

A record is `[sent_at, latency_s, status, run_id, retry_after(, scheduled_at)]` (bench/loadgen.py).
"""

from __future__ import annotations

from typing import Any

from bench.context import Bench
from bench.loadgen import LoadGenerator
from bench.stack import BenchError

#: Threads of the load generator for paced tests: enough that sends never wait for answers.
PACED_CONCURRENCY = 32


def fire_serially(bench: Bench, workflow_id: str, secret: str, count: int) -> None:
    """A few triggers one at a time (warm-up), each waited for."""
    spec = trigger_spec(bench, workflow_id, secret, mode="burst", concurrency=1)
    result = LoadGenerator(f"{workflow_id}-warmup", {**spec, "count": count}, bench.workdir)
    run_ids = admitted(result.start().wait(timeout=60)["records"])
    if len(run_ids) < count or not bench.wait_for_runs(run_ids, 30):
        raise BenchError(f"warm-up triggers of {workflow_id} did not all run")


def trigger_spec(
    bench: Bench, workflow_id: str, secret: str, *, mode: str, concurrency: int, **extra: Any
) -> dict[str, Any]:
    return {
        "mode": mode,
        "base_url": bench.stack.web_url,
        "workflow_id": workflow_id,
        "secret": secret,
        "concurrency": concurrency,
        "max_seconds": 60,
        **extra,
    }


def admitted(records: list[list[Any]]) -> list[str]:
    return [record[3] for record in records if record[2] == 202 and record[3]]


def status_counts(records: list[list[Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        counts[str(record[2])] = counts.get(str(record[2]), 0) + 1
    return counts
