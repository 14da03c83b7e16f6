"""Scenario 4a: trigger to done for the 4-node workflow, at 20 runs/s offered.

Signed triggers go through gunicorn from the load generator (open loop); a run's latency is
its finished_at (PostgreSQL) minus the moment its trigger was sent.
"""

from __future__ import annotations

from app.demo import new_webhook_secret
from bench.context import Bench
from bench.costs import phase_cost
from bench.definitions import webhook_flow
from bench.loadgen import LoadGenerator
from bench.scenarios.triggers import (
    PACED_CONCURRENCY,
    fire_serially,
    status_counts,
    trigger_spec,
)
from bench.stats import rounded, summarize_ms


def end_to_end_latency(bench: Bench) -> None:
    workflow_id = "bench-e2e"
    secret = new_webhook_secret()
    bench.put_workflow(webhook_flow(workflow_id, secret))
    fire_serially(bench, workflow_id, secret, bench.plan.warmup)

    plan = bench.plan
    spec = trigger_spec(
        bench,
        workflow_id,
        secret,
        mode="paced",
        concurrency=PACED_CONCURRENCY,
        rate=plan.e2e_rate,
        seconds=plan.e2e_seconds,
    )
    before = bench.reading()
    records = (
        LoadGenerator("e2e", spec, bench.workdir).start().wait(plan.e2e_seconds + 60)["records"]
    )
    sent_at = {record[3]: record[0] for record in records if record[2] == 202}
    run_ids = list(sent_at)
    finished_in_time = bench.wait_for_runs(run_ids, 30)
    after = bench.reading()
    runs = bench.run_times(run_ids)
    done = {
        run_id: run.finished
        for run_id, run in runs.items()
        if run.status == "succeeded" and run.finished is not None
    }
    trigger_to_done = [finished - sent_at[run_id] for run_id, finished in done.items()]
    created_to_done = [finished - runs[run_id].created for run_id, finished in done.items()]
    summary = summarize_ms(trigger_to_done)
    bench.metrics["e2e_p50_ms"] = summary["p50_ms"]
    bench.metrics["e2e_p99_ms"] = summary["p99_ms"]
    bench.details["e2e"] = {
        "offered_per_s": plan.e2e_rate,
        "seconds": plan.e2e_seconds,
        "sent": len(records),
        "answers": status_counts(records),
        "succeeded": len(done),
        "all_finished_in_time": finished_in_time,
        "trigger_to_done": summary,
        "created_to_done": summarize_ms(created_to_done),
        "trigger_answer": summarize_ms([record[1] for record in records]),
        "send_lag_max_ms": rounded(
            max((record[0] - record[5]) * 1000 for record in records) if records else None
        ),
        "cost_per_run_at_this_rate": phase_cost(before, after, len(done), "run"),
    }
    if len(done) < len(records):
        bench.notes.append(f"e2e: {len(records) - len(done)} of {len(records)} runs not succeeded")
