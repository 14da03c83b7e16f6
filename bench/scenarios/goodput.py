"""Scenario 4d, goodput under overload (issue 17, section 2): completed runs per second while 64
keep-alive connections send signed triggers as fast as they can, each sending a refused
delivery again at once (bench/loadgen.py `flood`), as a fraction of the saturation scenario's
drained-backlog rate (`runs_per_s`, the same workflow definition, the same run of the bench).

`refused_cpu_ratio` compares the front end's CPU per refused request with its CPU per accepted
one, each measured in a phase of its own: accepted ones paced at half the drain rate with the
worker running (the queue stays under DUALMCP_MAX_QUEUE_DEPTH), refused ones flooded with the
worker paused and the queue held above the limit. Every run accepted in any phase is waited
for: `goodput_lost` counts those that did not succeed.
"""

from __future__ import annotations

import time
from typing import Any

from app.config import get_settings
from app.demo import new_webhook_secret
from bench.context import Bench
from bench.costs import Reading, phase_cost
from bench.definitions import webhook_flow
from bench.loadgen import LoadGenerator
from bench.scenarios.triggers import PACED_CONCURRENCY, admitted, fire_serially, trigger_spec
from bench.stats import rounded, summarize_ms

#: The senders of the flood: each a keep-alive connection in a closed loop.
FLOOD_CONNECTIONS = 64
#: Used when the saturation scenario measured no rate.
FALLBACK_RATE = 100.0
#: Deliveries signed per second of flood: more than the front end can accept.
SIGNED_PER_S = 1500


def goodput(bench: Bench) -> None:
    plan = bench.plan
    drained = bench.metrics.get("runs_per_s")
    if not drained:
        bench.notes.append("goodput: no drained rate measured; no fraction reported")
    workflow_id = "bench-goodput"
    secret = new_webhook_secret()
    bench.put_workflow(webhook_flow(workflow_id, secret))  # the saturation scenario's shape
    fire_serially(bench, workflow_id, secret, plan.warmup)
    seconds = plan.goodput_phase_seconds

    # Accepted: paced under the drain rate, so the queue stays short and nothing is refused.
    spec = trigger_spec(bench, workflow_id, secret, mode="paced", concurrency=PACED_CONCURRENCY)
    spec |= {"rate": 0.5 * (drained or FALLBACK_RATE), "seconds": seconds}
    accepted_phase = _phase(bench, "goodput-accepted", spec)
    accepted_ids = admitted(accepted_phase.records)

    # Refused: the worker paused behind a backlog past the limit; every trigger is refused.
    flood = trigger_spec(bench, workflow_id, secret, mode="flood", concurrency=FLOOD_CONNECTIONS)
    backlog_size = get_settings().max_queue_depth + 50
    with bench.workers_paused():
        payloads = [{"amount": n % 200, "customer": f"c-{n}"} for n in range(backlog_size)]
        backlog = bench.start_runs(workflow_id, payloads)
        time.sleep(0.5)  # past every front end's cached depth (QUEUE_DEPTH_TTL_S)
        spec = {**flood, "seconds": seconds, "count": int(SIGNED_PER_S * seconds)}
        refused_phase = _phase(bench, "goodput-refused", spec)
    refused_count = sum(refused_phase.loaded["retried"].get(s, 0) for s in ("429", "503"))
    leaked = admitted(refused_phase.records)  # admitted while the queue was full: none expected
    earlier = accepted_ids + backlog + leaked
    bench.wait_for_runs(earlier, plan.overload_drain_timeout_s, interval=0.25)

    # The flood: the worker running, every sender as fast as it can.
    spec = {**flood, "seconds": plan.goodput_seconds, "count": SIGNED_PER_S * plan.goodput_seconds}
    flood_phase = _phase(bench, "goodput-flood", spec)
    run_ids = admitted(flood_phase.records)
    finished_in_time = bench.wait_for_runs(run_ids, plan.overload_drain_timeout_s, interval=0.25)
    runs = bench.run_times(run_ids + earlier)
    lost = [run_id for run_id in run_ids + earlier if _not_succeeded(runs.get(run_id))]

    window_start = min((r[0] for r in flood_phase.records), default=flood_phase.before.at)
    window_end = window_start + plan.goodput_seconds
    completed = [
        run.finished
        for run_id, run in runs.items()
        if run_id in set(run_ids) and run.finished and window_start <= run.finished <= window_end
    ]
    completed_per_s = len(completed) / plan.goodput_seconds
    web_accepted = accepted_phase.web_cpu_ms(len(accepted_ids))
    web_refused = refused_phase.web_cpu_ms(refused_count)
    if drained:
        bench.metrics["overload_goodput_fraction"] = rounded(completed_per_s / drained, 3)
    if web_accepted and web_refused is not None and accepted_ids and refused_count:
        bench.metrics["refused_cpu_ratio"] = rounded(web_refused / web_accepted, 3)
    bench.metrics["goodput_lost"] = len(lost)
    bound = _goodput_bound(bench)
    bench.metrics["overload_goodput_bound"] = rounded(bound, 3)
    fraction = bench.metrics.get("overload_goodput_fraction")
    if bound and fraction is not None:
        bench.metrics["overload_goodput_of_bound"] = rounded(fraction / bound, 3)
    lost_by_status: dict[str, int] = {}
    for run_id in lost:
        status = runs[run_id].status if run_id in runs else "missing"
        lost_by_status[status] = lost_by_status.get(status, 0) + 1
    retried = flood_phase.loaded["retried"]
    bench.details["goodput"] = {
        "connections": FLOOD_CONNECTIONS,
        "seconds": plan.goodput_seconds,
        "drained_runs_per_s": drained,
        "completed_per_s": rounded(completed_per_s, 1),
        "accepted_per_s": rounded(len(run_ids) / plan.goodput_seconds, 1),
        "refused_per_s": rounded(
            (retried.get("429", 0) + retried.get("503", 0)) / plan.goodput_seconds, 1
        ),
        "refused_and_failed_sends": retried,
        "refusals_with_retry_after": flood_phase.loaded["retried_with_retry_after"],
        "refusal_answer": summarize_ms(flood_phase.loaded["retried_latency_sample"]),
        "accepted_answer": summarize_ms([r[1] for r in flood_phase.records if r[2] == 202]),
        "other_answers": _other_answers(flood_phase.records),
        "finished_in_time": finished_in_time,
        "lost": len(lost),
        "lost_by_status": lost_by_status,
        "load_generator_cpu_s": flood_phase.loaded["cpu_s"],
        "cost_during_flood_per_completed_run": phase_cost(
            flood_phase.before, flood_phase.after, len(completed), "run"
        ),
        "web_cpu_ms_per_accepted": rounded(web_accepted, 3),
        "web_cpu_ms_per_refused": rounded(web_refused, 3),
        "accepted_phase": {
            "offered_per_s": rounded(accepted_phase.loaded["spec"]["rate"], 1),
            "accepted": len(accepted_ids),
            "other_answers": _other_answers(accepted_phase.records),
        },
        "refused_phase": {
            "refused": refused_count,
            "refused_per_s": rounded(refused_count / seconds, 1),
            "admitted_while_full": len(leaked),
            "load_generator_cpu_s": refused_phase.loaded["cpu_s"],
        },
    }
    if lost:
        bench.notes.append(f"goodput: {len(lost)} accepted runs did not succeed")


def _goodput_bound(bench: Bench) -> float | None:
    """The most goodput one machine can give while it also accepts each run's trigger, if
    refusals cost nothing: the drained rate pays only for running a run, a run completed in the
    flood also for accepting its trigger (both measured by the saturation scenario, over every
    process). Where web and workers share the CPU, `overload_goodput_fraction` cannot pass it."""
    costs = bench.details.get("saturation", {}).get("cpu_ms_per_run", {})
    accepting, running = costs.get("accepting_the_trigger"), costs.get("running_it")
    if not accepting or not running:
        return None
    return float(running) / (float(running) + float(accepting))


class _Phase:
    """One load generator's run and the readings around it."""

    def __init__(self, before: Reading, after: Reading, loaded: dict[str, Any]) -> None:
        self.before, self.after, self.loaded = before, after, loaded
        self.records: list[list[Any]] = loaded["records"]

    def web_cpu_ms(self, requests: int) -> float | None:
        if not requests:
            return None
        return (self.after.cpu.get("web", 0.0) - self.before.cpu.get("web", 0.0)) * 1000 / requests


def _phase(bench: Bench, name: str, spec: dict[str, Any]) -> _Phase:
    before = bench.reading(tasks=False)
    loaded = LoadGenerator(name, spec, bench.workdir).start().wait(spec["seconds"] + 60)
    return _Phase(before, bench.reading(tasks=False), {**loaded, "spec": spec})


def _not_succeeded(run: Any) -> bool:
    return run is None or run.status != "succeeded"


def _other_answers(records: list[list[Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        if record[2] != 202:
            counts[str(record[2])] = counts.get(str(record[2]), 0) + 1
    return counts
