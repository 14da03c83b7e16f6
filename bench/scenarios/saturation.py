"""Scenario 4b, saturation: completed runs per second with the default worker count, CPU per
run across every process, and GET /api/runs/<id> at 100/s meanwhile.

With the worker paused, the harness starts a backlog of 4-node runs (as the front end would:
one transaction, then publish); the worker is let go and drains it at full speed. The backlog
is sized from a pilot drain to last about `saturation_seconds`, below the sweeper's
republish threshold (DUALMCP_PENDING_REPUBLISH_S, 10 s): a deeper backlog gets every queued
run published twice, which the overload scenario shows. The rate is taken between the 10th
and 90th percentile of finish times. With --profile, py-spy records the worker meanwhile.
"""

from __future__ import annotations

import time

from app.demo import new_webhook_secret
from bench.context import Bench
from bench.costs import SUT, phase_cost
from bench.definitions import webhook_flow
from bench.loadgen import LoadGenerator
from bench.profiling import PySpy
from bench.scenarios.triggers import status_counts
from bench.stack import BenchError
from bench.stats import percentile, rounded, summarize_ms

PILOT_RUNS = 200
#: Runs started per transaction while building the backlog.
BATCH = 200


def _backlog(bench: Bench, workflow_id: str, count: int) -> list[str]:
    run_ids: list[str] = []
    for start in range(0, count, BATCH):
        payloads = [
            {"amount": index % 200, "customer": f"c-{index}"}
            for index in range(start, min(count, start + BATCH))
        ]
        run_ids += bench.start_runs(workflow_id, payloads)
    return run_ids


def _drain_rate(finished: list[float], since: float) -> tuple[float | None, float | None]:
    """(steady rate between the 10th and 90th percentile of finish times, overall rate)."""
    if not finished:
        return None, None
    overall = len(finished) / max(max(finished) - since, 1e-9)
    if len(finished) < 20:
        return None, overall
    t10, t90 = percentile(finished, 10), percentile(finished, 90)
    assert t10 is not None and t90 is not None
    return 0.8 * len(finished) / max(t90 - t10, 1e-9), overall


def saturation(bench: Bench) -> None:
    plan = bench.plan
    workflow_id = "bench-saturation"
    bench.put_workflow(webhook_flow(workflow_id, new_webhook_secret()))
    for index in range(plan.warmup):
        if not bench.wait_for_runs([bench.start_run(workflow_id, {"amount": index})], 10):
            raise BenchError("a warm-up run of the saturation workflow did not finish")

    with bench.workers_paused():
        pilot = _backlog(bench, workflow_id, PILOT_RUNS)
        resumed = time.time()
    if not bench.wait_for_runs(pilot, plan.drain_timeout_s):
        raise BenchError("the pilot backlog did not drain")
    pilot_rate, _ = _drain_rate(
        [run.finished for run in bench.run_times(pilot).values() if run.finished], resumed
    )
    size = int(min(max((pilot_rate or 100) * plan.saturation_seconds, 200), 20_000))

    poller: LoadGenerator | None = None
    profile: PySpy | None = None
    try:
        with bench.workers_paused():
            run_ids = _backlog(bench, workflow_id, size)
            poll_spec = {
                "mode": "poll",
                "base_url": bench.stack.web_url,
                "api_key": bench.stack.admin_key,
                "paths": [f"/api/runs/{run_id}" for run_id in run_ids[:: max(1, size // 500)]],
                "rate": plan.poll_rate,
                "max_seconds": plan.drain_timeout_s + 10,
                "concurrency": 8,
            }
            poller = LoadGenerator("status-poll", poll_spec, bench.workdir).start()
            time.sleep(0.5)  # the poller reaches its pace before the drain starts
            profile = PySpy.for_bench(bench, "worker", "saturation")
            before = bench.reading()
            resumed = time.time()
        drained = bench.wait_for_runs(run_ids, plan.drain_timeout_s, interval=0.1)
        after = bench.reading()
    finally:
        polls = poller.stop()["records"] if poller else []
        if profile:
            bench.details.setdefault("profile", {})["worker_during_saturation"] = profile.stop()

    runs = bench.run_times(run_ids)
    finished = [run.finished for run in runs.values() if run.finished]
    succeeded = sum(1 for run in runs.values() if run.status == "succeeded")
    steady, overall = _drain_rate(finished, resumed)
    bench.metrics["runs_per_s"] = rounded(steady or overall, 1)
    # A run's CPU: what the front end spent accepting its trigger (every process, during the
    # ingest scenario) plus what the worker, beat, PostgreSQL and Redis spent running it here
    # (gunicorn then serves only the status polls, so it is left out; PostgreSQL's share of
    # the polls stays in, a slight overestimate).
    without_web = tuple(group for group in SUT if group != "web")
    run_cost = phase_cost(before, after, len(finished), "run", groups=without_web)
    ingest_cpu = bench.metrics.get("ingest_cpu_ms_per_trigger")
    running = run_cost["cpu_ms_per_unit"] or 0.0
    bench.metrics["cpu_ms_per_run"] = rounded(running + ingest_cpu) if ingest_cpu else None
    ok_polls = [record[1] for record in polls if record[2] == 200]
    bench.metrics["status_poll_p99_ms"] = summarize_ms(ok_polls)["p99_ms"]
    bench.details["saturation"] = {
        "pilot_runs_per_s": rounded(pilot_rate, 1),
        "backlog": size,
        "drained_in_time": drained,
        "succeeded": succeeded,
        "worker_concurrency": "default (one pool process per core)",
        "runs_per_s_steady_10_90": rounded(steady, 1),
        "runs_per_s_overall": rounded(overall, 1),
        "drain_seconds": rounded(max(finished) - resumed, 2) if finished else None,
        "cpu_ms_per_run": {"accepting_the_trigger": ingest_cpu, "running_it": running},
        "cost_per_run": phase_cost(before, after, len(finished), "run"),
        "status_polls": {
            "sent": len(polls),
            "answers": status_counts(polls),
            "latency": summarize_ms(ok_polls),
        },
    }
    if not drained:
        bench.notes.append(
            f"saturation: {size - len(finished)} of {size} runs had not finished "
            f"after {plan.drain_timeout_s:g}s"
        )
