"""Scenario 3, ingest: signed Standard Webhooks triggers accepted per second through gunicorn,
and the same load on the floor (bench/flask_baseline.py: bare Flask + gunicorn + send_task).

The worker consumes nothing meanwhile (its queues paused, beat's sweeper with them), so the
front end is measured alone; the load generator sends `ingest_requests` distinct signed
deliveries, closed loop, one connection per gunicorn worker, within `ingest_max_seconds`.
A harness thread empties the runs queue every 50 ms, as workers that kept up would: otherwise
admission control (DUALMCP_MAX_QUEUE_DEPTH) refuses the burst once 200 messages wait, which is
what it is for, but not what this scenario measures. The front end still reads the depth and
publishes every message. The backlog is discarded afterwards (queues purged, runs cancelled).

The floor takes the same signed requests first, with the same load generator and worker count,
so `ingest_floor_fraction` (ours / the floor's rate) compares like with like on this box.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from app.demo import new_webhook_secret
from app.tasks.celery_app import RUNS_QUEUE
from bench.context import Bench
from bench.costs import phase_cost
from bench.definitions import webhook_flow
from bench.flask_baseline import INGEST_QUEUE
from bench.loadgen import LoadGenerator
from bench.profiling import PySpy
from bench.scenarios.triggers import admitted, fire_serially, status_counts, trigger_spec
from bench.stack import GUNICORN_WORKERS
from bench.stats import rounded, summarize_ms


@contextmanager
def _queue_kept_empty(redis_url: str, queue: str) -> Iterator[None]:
    client = redis.Redis.from_url(redis_url)
    stop = threading.Event()

    def drain() -> None:
        while not stop.wait(0.05):
            client.delete(queue)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        client.delete(queue)
        client.close()


def ingest(bench: Bench) -> None:
    plan = bench.plan
    workflow_id = "bench-ingest"
    secret = new_webhook_secret()
    bench.put_workflow(webhook_flow(workflow_id, secret))
    fire_serially(bench, workflow_id, secret, plan.warmup)
    spec = trigger_spec(
        bench,
        workflow_id,
        secret,
        mode="burst",
        concurrency=GUNICORN_WORKERS,
        count=plan.ingest_requests,
        max_seconds=plan.ingest_max_seconds,
    )
    floor = _floor(bench, {**spec, "base_url": bench.stack.web_baseline_url})
    with bench.workers_paused(), _queue_kept_empty(bench.stack.redis_url, RUNS_QUEUE):
        try:
            profile = PySpy.for_bench(bench, "web", "ingest")
            before = bench.reading(tasks=False)
            loaded = (
                LoadGenerator("ingest", spec, bench.workdir)
                .start()
                .wait(plan.ingest_max_seconds + 60)
            )
            after = bench.reading(tasks=False)
            if profile:
                bench.details.setdefault("profile", {})["web_during_ingest"] = profile.stop()
        finally:
            bench.discard_runs(workflow_id)
    records = loaded["records"]
    run_ids = admitted(records)
    bench.metrics["ingest_per_s"] = _rate(records)
    answers = summarize_ms([record[1] for record in records if record[2] == 202])
    bench.metrics["ingest_p99_ms"] = answers["p99_ms"]
    if floor["per_s"]:
        fraction = bench.metrics["ingest_per_s"] / floor["per_s"]
        bench.metrics["ingest_floor_fraction"] = rounded(fraction, 3)
    cost = phase_cost(before, after, len(run_ids), "trigger")
    bench.metrics["ingest_cpu_ms_per_trigger"] = cost["cpu_ms_per_unit"]
    bench.details["ingest"] = {
        "sent": len(records),
        "accepted": len(run_ids),
        "answers": status_counts(records),
        "errors": len(records) - len(run_ids),
        "concurrency": GUNICORN_WORKERS,
        "gunicorn_workers": GUNICORN_WORKERS,
        "accepted_answer": answers,
        "load_generator_cpu_ms_per_request": rounded(
            loaded["cpu_s"] * 1000 / max(len(records), 1), 3
        ),
        "cost_per_trigger": cost,
        "floor": floor,
    }


def _floor(bench: Bench, spec: dict[str, Any]) -> dict[str, Any]:
    """The same burst at bare Flask + gunicorn + send_task: its rate, answers and CPU."""
    loader = LoadGenerator("ingest-floor", spec, bench.workdir)
    with _queue_kept_empty(bench.stack.redis_url, INGEST_QUEUE):
        before = bench.reading(tasks=False)
        records = loader.start().wait(bench.plan.ingest_max_seconds + 60)["records"]
        after = bench.reading(tasks=False)
    accepted = admitted(records)
    answers = summarize_ms([record[1] for record in records if record[2] == 202])
    bench.metrics["ingest_floor_per_s"] = per_s = _rate(records)
    bench.metrics["ingest_floor_p99_ms"] = answers["p99_ms"]
    cost = phase_cost(before, after, len(accepted), "request", groups=("web_baseline", "redis"))
    return {
        "per_s": per_s,
        "sent": len(records),
        "answers": status_counts(records),
        "accepted_answer": answers,
        "cpu_ms_per_request": cost["cpu_ms_per_unit"],
        "machine_busy_ms_per_request": cost["machine_busy_ms_per_unit"],
    }


def _rate(records: list[list[Any]]) -> float:
    """Accepted requests per second, from the first send to the last answer."""
    if not records:
        return 0.0
    first: float = min(record[0] for record in records)
    last: float = max(record[0] + record[1] for record in records)
    return round(len(admitted(records)) / max(last - first, 1e-9), 1)
