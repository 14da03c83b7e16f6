"""Scenario 4c, overload: twice the sustained rate offered for 20 s (4 s with --quick).

Admitted runs should finish with p99 <= 2 s, the rest be refused at once (429/503 with
Retry-After, admission control on queue depth), and no admitted run be lost. The median finish
fraction says how far into the drain (first trigger sent -> last admitted run done) the median
admitted run finished: about 0.8 for a raw Celery chain, which runs breadth-first under a burst.
"""

from __future__ import annotations

from app.demo import new_webhook_secret
from bench.context import Bench
from bench.costs import phase_cost
from bench.definitions import webhook_flow
from bench.loadgen import LoadGenerator
from bench.scenarios.triggers import PACED_CONCURRENCY, fire_serially, trigger_spec
from bench.stats import percentile, rounded, summarize_ms

#: Used when the saturation scenario measured no rate.
FALLBACK_RATE = 100.0


def overload(bench: Bench) -> None:
    plan = bench.plan
    sustained = bench.metrics.get("runs_per_s")
    if not sustained:
        bench.notes.append(f"overload: no sustained rate measured; offered {FALLBACK_RATE:g}/s x2")
    rate = 2 * (sustained or FALLBACK_RATE)
    workflow_id = "bench-overload"
    secret = new_webhook_secret()
    bench.put_workflow(webhook_flow(workflow_id, secret))
    fire_serially(bench, workflow_id, secret, plan.warmup)

    spec = trigger_spec(
        bench,
        workflow_id,
        secret,
        mode="paced",
        concurrency=PACED_CONCURRENCY,
        rate=rate,
        seconds=plan.overload_seconds,
    )
    before = bench.reading()
    records = (
        LoadGenerator("overload", spec, bench.workdir)
        .start()
        .wait(plan.overload_seconds + 60)["records"]
    )
    sent_at = {record[3]: record[0] for record in records if record[2] == 202}
    admitted = list(sent_at)
    refused = [record for record in records if record[2] in (429, 503)]
    others = [record for record in records if record[2] not in (202, 429, 503)]
    drained = bench.wait_for_runs(admitted, plan.overload_drain_timeout_s, interval=0.25)
    after = bench.reading()
    left_in_queues = bench.queued_messages()

    runs = bench.run_times(admitted)
    done = {
        run_id: run.finished
        for run_id, run in runs.items()
        if run.status == "succeeded" and run.finished
    }
    lost = [
        run_id
        for run_id in admitted
        if run_id not in runs or runs[run_id].status in ("failed", "cancelled")
    ]
    unfinished = [run_id for run_id in admitted if run_id in runs and run_id not in done]
    unfinished = [run_id for run_id in unfinished if run_id not in lost]
    finish_latency = [done[run_id] - sent_at[run_id] for run_id in done]
    cost = phase_cost(before, after, len(done), "run")
    bench.metrics["overload_admitted_p99_ms"] = summarize_ms(finish_latency)["p99_ms"]
    fraction = None
    if done and records:
        start = min(record[0] for record in records)
        end = max(done.values())
        median = percentile(list(done.values()), 50)
        assert median is not None
        fraction = (median - start) / max(end - start, 1e-9)
    bench.metrics["overload_median_finish_fraction"] = rounded(fraction, 3)
    bench.metrics["overload_refused"] = len(refused)
    bench.metrics["overload_lost"] = len(lost)
    window_end = min(record[0] for record in records) + plan.overload_seconds if records else 0
    in_window = sum(1 for finished in done.values() if finished <= window_end)
    bench.details["overload"] = {
        "offered_per_s": rounded(rate, 1),
        "seconds": plan.overload_seconds,
        "sent": len(records),
        "admitted": len(admitted),
        "refused_429_503": len(refused),
        "refused_with_retry_after": sum(1 for record in refused if record[4]),
        "refusal_answer": summarize_ms([record[1] for record in refused]),
        "other_answers": {
            str(status): sum(1 for record in others if record[2] == status)
            for status in sorted({record[2] for record in others})
        },
        "admitted_answer": summarize_ms([record[1] for record in records if record[2] == 202]),
        "admitted_trigger_to_done": summarize_ms(finish_latency),
        "succeeded": len(done),
        "lost": len(lost),
        "unfinished_at_timeout": len(unfinished),
        "drained_in_time": drained,
        "completed_per_s_while_offered": rounded(in_window / max(plan.overload_seconds, 1e-9), 1),
        # More than one message and task per run: the sweeper republished runs that waited in
        # the queue past DUALMCP_PENDING_REPUBLISH_S.
        "node_messages_per_run": cost["redis_by_command_per_unit"].get("lpush"),
        "celery_tasks_per_run": cost["celery_tasks_per_unit"],
        # Duplicates still queued once every admitted run is done: work the worker has left.
        "messages_still_queued_after_drain": left_in_queues,
        "cost_per_run": cost,
    }
    if lost or unfinished:
        bench.notes.append(
            f"overload: {len(lost)} admitted runs lost (failed/cancelled/missing), "
            f"{len(unfinished)} unfinished after {plan.overload_drain_timeout_s:g}s"
        )
