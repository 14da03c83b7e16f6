"""Scenario 3, ingest: signed Standard Webhooks triggers accepted per second through gunicorn,
and the same load on the floor (bench/flask_baseline.py: bare Flask + gunicorn + send_task).

The worker consumes nothing meanwhile (its queues paused, beat's sweeper with them), so the
front end is measured alone; the load generator sends `ingest_requests` distinct signed
deliveries, closed loop, one connection per gunicorn worker, within `ingest_max_seconds`.
A harness thread empties the runs queue every 50 ms, as workers that kept up would: otherwise
admission control (DUALMCP_MAX_QUEUE_DEPTH) refuses the burst once 200 messages wait, which is
what it is for, but not what this scenario measures. The front end still reads the depth and
publishes every message. The backlog is discarded afterwards (queues purged, runs cancelled).

The floor takes the same signed requests, with the same load generator and worker count, in
turns with ours (ROUNDS each), so `ingest_floor_fraction` (ours / the floor's rate) compares
like with like on this box even while its speed drifts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis

from app.demo import new_webhook_secret
from app.tasks.celery_app import RUNS_QUEUE
from bench.context import Bench
from bench.costs import SUT, Reading, combined, phase_cost
from bench.definitions import webhook_flow
from bench.flask_baseline import INGEST_QUEUE
from bench.loadgen import LoadGenerator
from bench.profiling import PySpy
from bench.scenarios.triggers import admitted, fire_serially, status_counts, trigger_spec
from bench.stack import GUNICORN_WORKERS
from bench.stats import rounded, summarize_ms


@contextmanager
def _queues_kept_empty(redis_url: str, *queues: str) -> Iterator[None]:
    client = redis.Redis.from_url(redis_url)
    stop = threading.Event()

    def drain() -> None:
        while not stop.wait(0.05):
            client.delete(*queues)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        client.delete(*queues)
        client.close()


#: The floor and ours take turns, a share of the requests each, so the box's drift (it lost a
#: third of its speed within minutes on 2026-12-01) falls on both alike.
ROUNDS = 3


@dataclass
class Bursts:
    """The rounds of one side: every answer, and the readings around each round."""

    records: list[list[Any]] = field(default_factory=list)
    readings: list[tuple[Reading, Reading]] = field(default_factory=list)
    seconds: float = 0.0
    load_generator_cpu_s: float = 0.0

    def run(self, bench: Bench, name: str, spec: dict[str, Any]) -> None:
        before = bench.reading(tasks=False)
        loaded = LoadGenerator(name, spec, bench.workdir).start().wait(spec["max_seconds"] + 60)
        self.readings.append((before, bench.reading(tasks=False)))
        records = loaded["records"]
        self.records += records
        self.load_generator_cpu_s += loaded["cpu_s"]
        if records:
            first = min(record[0] for record in records)
            self.seconds += max(record[0] + record[1] for record in records) - first

    @property
    def per_s(self) -> float:
        return round(len(admitted(self.records)) / max(self.seconds, 1e-9), 1)

    def cost(self, unit: str, groups: tuple[str, ...]) -> dict[str, Any]:
        before, after = combined(self.readings)
        return phase_cost(before, after, len(admitted(self.records)), unit, groups=groups)


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
        count=plan.ingest_requests // ROUNDS,
        max_seconds=plan.ingest_max_seconds / ROUNDS,
    )
    floor_spec = {**spec, "base_url": bench.stack.web_baseline_url}
    ours, floor = Bursts(), Bursts()
    redis_url = bench.stack.redis_url
    with bench.workers_paused(), _queues_kept_empty(redis_url, RUNS_QUEUE, INGEST_QUEUE):
        try:
            profile = PySpy.for_bench(bench, "web", "ingest")
            for index in range(ROUNDS):
                floor.run(bench, f"ingest-floor-{index}", floor_spec)
                ours.run(bench, f"ingest-{index}", spec)
            if profile:
                bench.details.setdefault("profile", {})["web_during_ingest"] = profile.stop()
        finally:
            bench.discard_runs(workflow_id)
    run_ids = admitted(ours.records)
    bench.metrics["ingest_per_s"] = ours.per_s
    answers = _answers(ours)
    bench.metrics["ingest_p99_ms"] = answers["p99_ms"]
    bench.metrics["ingest_floor_per_s"] = floor.per_s
    bench.metrics["ingest_floor_p99_ms"] = _answers(floor)["p99_ms"]
    if floor.per_s:
        bench.metrics["ingest_floor_fraction"] = rounded(ours.per_s / floor.per_s, 3)
    cost = ours.cost("trigger", SUT)
    bench.metrics["ingest_cpu_ms_per_trigger"] = cost["cpu_ms_per_unit"]
    floor_cost = floor.cost("request", ("web_baseline", "redis"))
    bench.details["ingest"] = {
        "rounds": ROUNDS,
        "sent": len(ours.records),
        "accepted": len(run_ids),
        "answers": status_counts(ours.records),
        "errors": len(ours.records) - len(run_ids),
        "concurrency": GUNICORN_WORKERS,
        "gunicorn_workers": GUNICORN_WORKERS,
        "accepted_answer": answers,
        "load_generator_cpu_ms_per_request": rounded(
            ours.load_generator_cpu_s * 1000 / max(len(ours.records), 1), 3
        ),
        "cost_per_trigger": cost,
        "floor": {
            "per_s": floor.per_s,
            "sent": len(floor.records),
            "answers": status_counts(floor.records),
            "accepted_answer": _answers(floor),
            "cpu_ms_per_request": floor_cost["cpu_ms_per_unit"],
            "machine_busy_ms_per_request": floor_cost["machine_busy_ms_per_unit"],
        },
    }


def _answers(bursts: Bursts) -> dict[str, Any]:
    return summarize_ms([record[1] for record in bursts.records if record[2] == 202])
