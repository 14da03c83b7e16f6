"""Scenario 2: what one of our nodes costs next to a raw Celery task.

A workflow of 8 `http_request` nodes against the echo server (each node its own task, like the
baselines' chains) gives `node_ms`, `node_overhead_ratio` (to the raw chain's task) and
`node_durable_ratio` (to the durable chain's, results stored in PostgreSQL); a workflow of 8
`transform` nodes (control nodes, run inline in one task, each still its own node_run) gives
`control_node_ms`.
Runs are started one at a time, as the front end starts them (one transaction, then publish),
and timed by PostgreSQL: created_at to finished_at.
"""

from __future__ import annotations

import itertools
from typing import Any

from bench.context import Bench
from bench.costs import phase_cost
from bench.definitions import CHAIN_LENGTH, http_chain, transform_chain
from bench.profiling import PySpy
from bench.stack import BenchError
from bench.stats import percentile, rounded, summarize_ms

#: Longest wait for one 8-node run.
RUN_TIMEOUT_S = 15


def _serial_runs(bench: Bench, workflow_id: str) -> tuple[list[str], dict[str, Any]]:
    """Warm up, then time `serial_runs` runs one after another; the run ids and their cost."""

    def one_run(index: int) -> str:
        run_id = bench.start_run(workflow_id, {"i": index})
        if not bench.wait_for_runs([run_id], RUN_TIMEOUT_S, interval=0.005):
            raise BenchError(f"run {run_id} of {workflow_id} did not finish in {RUN_TIMEOUT_S}s")
        return run_id

    for index in range(bench.plan.warmup):
        one_run(index)
    before = bench.reading()
    run_ids = [one_run(index) for index in range(bench.plan.serial_runs)]
    after = bench.reading()
    nodes = len(run_ids) * CHAIN_LENGTH
    cost = phase_cost(before, after, nodes, "node", groups=("worker", "postgres", "redis"))
    times = bench.run_times(run_ids)
    failed = [run_id for run_id, run in times.items() if run.status != "succeeded"]
    if failed:
        raise BenchError(f"{len(failed)} runs of {workflow_id} did not succeed, e.g. {failed[0]}")
    return run_ids, cost


def _breakdown(bench: Bench, run_ids: list[str]) -> dict[str, Any]:
    """Where a run's time goes: inside nodes, between them (the hop), and before the first."""
    runs = bench.run_times(run_ids)
    in_node, hops, first = [], [], []
    for run_id, nodes in bench.node_times(run_ids).items():
        in_node += [finished - started for _, started, finished in nodes]
        hops += [nxt[1] - prev[2] for prev, nxt in itertools.pairwise(nodes)]
        first.append(nodes[0][1] - runs[run_id].created)
    return {
        "in_node": summarize_ms(in_node),
        "between_nodes": summarize_ms(hops),
        "created_to_first_node": summarize_ms(first),
    }


def http_nodes(bench: Bench) -> None:
    """node_ms = p50 run latency / 8; node_overhead_ratio = node_ms / celery_chain_ms_per_task;
    node_durable_ratio = node_ms / durable_chain_ms_per_task."""
    workflow_id = "bench-http8"
    bench.put_workflow(http_chain(workflow_id, bench.stack.echo_url))
    profile = PySpy.for_bench(bench, "worker", "http_nodes")
    run_ids, cost = _serial_runs(bench, workflow_id)
    if profile:
        bench.details.setdefault("profile", {})["worker_during_http_nodes"] = profile.stop()
    runs = bench.run_times(run_ids)
    latencies = [run.finished - run.created for run in runs.values() if run.finished]
    p50 = percentile(latencies, 50)
    assert p50 is not None
    node_ms = p50 * 1000 / CHAIN_LENGTH
    bench.metrics["node_ms"] = rounded(node_ms, 3)
    bench.metrics["node_cpu_ms"] = cost["cpu_ms_per_unit"]
    chain_ms = bench.metrics.get("celery_chain_ms_per_task")
    bench.metrics["node_overhead_ratio"] = rounded(node_ms / chain_ms, 3) if chain_ms else None
    durable_ms = bench.metrics.get("durable_chain_ms_per_task")
    bench.metrics["node_durable_ratio"] = rounded(node_ms / durable_ms, 3) if durable_ms else None
    bench.details["http_nodes"] = {
        "run_latency": summarize_ms(latencies),
        "breakdown": _breakdown(bench, run_ids),
        "cost_per_node": cost,
    }


def control_nodes(bench: Bench) -> None:
    """control_node_ms = p50 over runs of (finished_at - started_at) / 8: the whole run is one
    task, so this is each node's lease, render, driver and commit, with no hop."""
    workflow_id = "bench-transform8"
    bench.put_workflow(transform_chain(workflow_id))
    run_ids, cost = _serial_runs(bench, workflow_id)
    runs = bench.run_times(run_ids)
    in_task = [run.finished - run.started for run in runs.values() if run.finished and run.started]
    latencies = [run.finished - run.created for run in runs.values() if run.finished]
    p50 = percentile(in_task, 50)
    assert p50 is not None
    control_ms = p50 * 1000 / CHAIN_LENGTH
    bench.metrics["control_node_ms"] = rounded(control_ms, 3)
    chain_ms = bench.metrics.get("celery_chain_ms_per_task")
    bench.metrics["control_node_ratio"] = rounded(control_ms / chain_ms, 3) if chain_ms else None
    bench.details["control_nodes"] = {
        "run_latency": summarize_ms(latencies),
        "run_in_task": summarize_ms(in_task),
        "breakdown": _breakdown(bench, run_ids),
        "cost_per_node": cost,
    }


def db_round_trips(bench: Bench) -> None:
    """bench/round_trips.py: statements, BEGINs and COMMITs one control node sends."""
    from bench.round_trips import count_round_trips

    counted = count_round_trips(bench.stack.database_url)
    bench.metrics["db_round_trips_per_node"] = rounded(counted["per_node"], 2)
    bench.details["db_round_trips"] = counted
