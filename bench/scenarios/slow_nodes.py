"""Scenario 7, slow nodes: LLM calls that wait 1 s on the network, by the hundred (issue 17, 1).

A one-node workflow whose node is the real `openai` driver, its `base_url` the slow server
(bench/slow_server.py: a Chat Completions answer after 1 s). With the stack's worker paused,
each case starts a worker of its own, warms it up, makes a batch of runs (as the front end
would, 100 per transaction), publishes them all at once and stops the worker at the end:

- the I/O pool: `celery worker -P threads -c 100`, one process, `slow_runs` runs;
- prefork as the default deployment runs it (`-c 4`): a smaller sample (`slow_prefork_runs`),
  since 500 runs would take ~125 s there; its rate stands for the whole batch.

Reported: runs/s of each (runs / (last finish - publish)) and the speedup; p50/p99 from the
publish to finished (PostgreSQL's finish times; created -> finished is in the details too);
the server's most requests in flight at once (`slow_nodes_in_flight`, the I/O pool's);
`slow_p99_vs_ideal` = p99 / (runs / in_flight x delay); the I/O worker's memory per in-flight
node (peak RSS during the batch minus its RSS idle just before, / in_flight); CPU per node
(the worker, PostgreSQL and Redis). With --profile, py-spy records the worker meanwhile.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bench import procfs
from bench.context import Bench
from bench.costs import Reading, phase_cost
from bench.profiling import PySpy
from bench.stack import BenchError, Process, free_port, wait_until
from bench.stats import percentile, rounded, summarize_ms

if TYPE_CHECKING:
    from app.workflows.runs import NodeRef

WORKFLOW_ID = "bench-slow-llm"
#: Seconds the slow server waits before each answer.
DELAY_S = 1.0
IO_CONCURRENCY = 100
PREFORK_CONCURRENCY = 4
#: Runs made per transaction.
BATCH = 100
#: The key the worker's openai SDK sends; the slow server checks none.
FAKE_OPENAI_KEY = "sk-bench-not-a-key"


def slow_llm_flow(workflow_id: str, base_url: str) -> dict[str, Any]:
    return {
        "workflow_id": workflow_id,
        "name": "bench: one slow LLM node",
        "nodes": [
            {
                "id": "ask",
                "type": "openai",
                "params": {
                    "prompt": "Score this lead: {{ trigger.lead }}",
                    "model": "bench-slow",
                    "base_url": base_url,
                },
            }
        ],
    }


def slow_nodes(bench: Bench) -> None:
    port = free_port()
    server = Process(
        "slow_server",
        [sys.executable, "-m", "bench.slow_server", f"--port={port}", f"--delay={DELAY_S}"],
        bench.stack.app_env(),
        bench.workdir,
    )
    stats_url = f"http://127.0.0.1:{port}/stats"
    bench.stack.processes[server.name] = server  # stopped by stack.stop() if the run aborts
    server.start()
    try:
        wait_until(lambda: _answers(stats_url), 15, "the slow server")
        bench.put_workflow(slow_llm_flow(WORKFLOW_ID, f"http://127.0.0.1:{port}/v1"))
        with bench.workers_paused():
            io = _case(bench, server, "threads", IO_CONCURRENCY, bench.plan.slow_runs)
            prefork = _case(
                bench, server, "prefork", PREFORK_CONCURRENCY, bench.plan.slow_prefork_runs
            )
    finally:
        server.stop()
        bench.stack.processes.pop(server.name, None)

    in_flight = io["max_in_flight"]
    ideal_s = io["runs"] / max(in_flight, 1) * DELAY_S
    p99_ms = io["released_to_finished"]["p99_ms"]
    bench.metrics["slow_nodes_in_flight"] = in_flight
    bench.metrics["slow_p99_vs_ideal"] = rounded(p99_ms / 1000 / ideal_s) if p99_ms else None
    bench.metrics["slow_io_runs_per_s"] = io["runs_per_s"]
    bench.metrics["slow_prefork_runs_per_s"] = prefork["runs_per_s"]
    if io["runs_per_s"] and prefork["runs_per_s"]:
        bench.metrics["slow_io_speedup"] = rounded(io["runs_per_s"] / prefork["runs_per_s"], 1)
    bench.metrics["slow_io_p99_ms"] = p99_ms
    bench.metrics["slow_kb_per_in_flight"] = io["kb_per_in_flight"]
    bench.metrics["slow_cpu_ms_per_node"] = io["cost"]["cpu_ms_per_unit"]
    bench.details["slow_nodes"] = {
        "delay_s": DELAY_S,
        "ideal_s": rounded(ideal_s, 2),
        "io_pool": io,
        "prefork": prefork,
    }
    unfinished = [
        f"{name}: {case['runs'] - case['succeeded']} of {case['runs']} ({case['statuses']})"
        for name, case in (("I/O pool", io), ("prefork", prefork))
        if case["succeeded"] != case["runs"]
    ]
    if unfinished:  # the figures above stay in the JSON; the scenario fails
        raise BenchError(f"slow nodes: runs did not succeed: {'; '.join(unfinished)}")


def _case(bench: Bench, server: Process, pool: str, concurrency: int, runs: int) -> dict[str, Any]:
    """Start a worker with this pool, warm it, time `runs` runs started together, stop it."""
    began = time.monotonic()
    stats_url = _stats_url(server)
    hostname = f"slow-{pool}@{socket.gethostname()}"
    env = {**bench.stack.app_env(), "OPENAI_API_KEY": FAKE_OPENAI_KEY}
    argv = [sys.executable, "-m", "celery", "-A", "app.tasks", "worker", "--loglevel=INFO"]
    argv += [f"--pool={pool}", f"--concurrency={concurrency}", f"--hostname={hostname}"]
    worker = Process(f"slow_worker_{pool}", argv, env, bench.workdir)
    bench.stack.processes[worker.name] = worker
    worker.start()
    try:
        wait_until(
            lambda: _worker_answers(worker, hostname), 90, f"the {pool} worker", interval=0.25
        )
        # A process makes its runtime (engine, HTTP client, SDK client) on first use: one run
        # per prefork child; one alone for the threads pool, whose threads share the runtime
        # (a burst on a cold one would have each thread make its own: get_runtime has no lock).
        _run_all(bench, concurrency if pool == "prefork" else 1, timeout=30)
        httpx.post(stats_url.replace("/stats", "/stats/reset"), timeout=5)

        # Every run is made first and published only then, all at once: the batch reaches the
        # worker together rather than at the harness's pace of making runs (seconds for 500 on
        # a busy box), and what the readings count is the worker's, not the making.
        from app.tasks.runtime import publish  # after the stack set the broker's address

        run_ids, refs, made_in = _make_batch(bench, runs)
        rss = RssSampler(worker.pid)
        before = _reading(bench, worker, server)
        rss.start()
        profile = PySpy.for_bench(bench, worker.name, "slow-nodes")
        released = time.time()
        publish(refs)
        drained = bench.wait_for_runs(run_ids, timeout=max(60.0, runs / concurrency * 3 * DELAY_S))
        peak_kb = rss.stop()
        if profile:
            bench.details.setdefault("profile", {})[f"slow_worker_{pool}"] = profile.stop()
        after = _reading(bench, worker, server)
        stats = httpx.get(stats_url, timeout=5).json()
    finally:
        worker.stop()
        bench.stack.processes.pop(worker.name, None)

    times = bench.run_times(run_ids)
    statuses: dict[str, int] = {}
    for run in times.values():
        statuses[run.status] = statuses.get(run.status, 0) + 1
    finished = [run.finished for run in times.values() if run.finished]
    latencies = [at - released for at in finished]
    since_created = [run.finished - run.created for run in times.values() if run.finished]
    span = max(finished) - released if finished else None
    in_flight = int(stats["max_in_flight"])
    groups = ("slow_worker", "postgres", "redis")
    return {
        "pool": f"{pool} -c {concurrency}",
        "runs": runs,
        "succeeded": statuses.get("succeeded", 0),
        "statuses": statuses,
        "drained_in_time": drained,
        "seconds_in_all": rounded(time.monotonic() - began, 1),
        "seconds_to_make_the_batch": rounded(made_in, 3),
        "runs_per_s": rounded(len(finished) / span, 1) if span else None,
        "released_to_finished": summarize_ms(latencies),
        "created_to_finished": summarize_ms(since_created),
        "p10_finish_s": rounded(percentile(latencies, 10), 3),
        "max_in_flight": in_flight,
        "server_requests": stats["requests"],
        "server_connections": stats["connections"],
        **_node_spread(bench, run_ids, released),
        "rss_idle_kb": rss.idle_kb,
        "rss_peak_kb": peak_kb,
        # One process only in the threads pool; prefork's children are not counted.
        "kb_per_in_flight": rounded((peak_kb - rss.idle_kb) / max(in_flight, 1), 1)
        if pool == "threads"
        else None,
        "cost": phase_cost(before, after, len(finished), "node", groups=groups),
    }


def _node_spread(bench: Bench, run_ids: list[str], released: float) -> dict[str, Any]:
    """When the nodes started after the release (how fast the pool fills) and how long each
    took (the server's delay plus the call's own overhead)."""
    nodes = [node for run in bench.node_times(run_ids).values() for node in run]
    starts = [started - released for _, started, _ in nodes]
    return {
        "node_started_after_release_s": {
            f"p{q}": rounded(percentile(starts, q), 3) for q in (10, 20, 50, 90)
        },
        "in_node": summarize_ms([finished - started for _, started, finished in nodes]),
    }


def _make_batch(bench: Bench, runs: int) -> tuple[list[str], list[NodeRef], float]:
    """`runs` runs made as the front end makes them (BATCH per transaction), not yet
    published: their run ids, the messages to publish, and the seconds it took."""
    # The app's modules read the environment the stack set: imported only once it is up.
    from app.models import make_engine, make_session_factory
    from app.workflows import start_run

    began = time.monotonic()
    engine = make_engine(bench.stack.superuser_url)
    sessions = make_session_factory(engine)
    run_ids: list[str] = []
    refs: list[NodeRef] = []
    try:
        for first in range(0, runs, BATCH):
            with sessions.begin() as session:
                for index in range(first, min(runs, first + BATCH)):
                    run = start_run(session, WORKFLOW_ID, {"lead": index})
                    run_ids.append(run.run_id)
                    refs += run.to_publish
    finally:
        engine.dispose()
    return run_ids, refs, time.monotonic() - began


def _run_all(bench: Bench, count: int, timeout: float) -> None:
    run_ids = bench.start_runs(WORKFLOW_ID, [{"lead": i} for i in range(count)])
    if not bench.wait_for_runs(run_ids, timeout):
        raise BenchError(f"{count} warm-up runs of {WORKFLOW_ID} did not finish in {timeout:g}s")
    failed = [run for run in bench.run_times(run_ids).values() if run.status != "succeeded"]
    if failed:
        raise BenchError(f"a warm-up run of {WORKFLOW_ID} ended {failed[0].status}")


def _reading(bench: Bench, worker: Process, server: Process) -> Reading:
    """The stack's reading plus this case's worker and the slow server (outside world)."""
    reading = bench.reading(tasks=False)
    reading.cpu["slow_worker"] = procfs.tree_cpu_seconds(worker.pid)
    reading.cpu["slow_server"] = procfs.tree_cpu_seconds(server.pid)
    return reading


class RssSampler:
    """The process's resident memory: idle when made, the peak while sampling (every 20 ms)."""

    def __init__(self, pid: int) -> None:
        self.path = Path(f"/proc/{pid}/status")
        self.idle_kb = self.read_kb()
        self.peak_kb = self.idle_kb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def read_kb(self) -> int:
        for line in self.path.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_kb

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak_kb = max(self.peak_kb, self.read_kb())
            except OSError:
                return


def _stats_url(server: Process) -> str:
    port = next(arg.split("=", 1)[1] for arg in server.argv if arg.startswith("--port="))
    return f"http://127.0.0.1:{port}/stats"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _worker_answers(worker: Process, hostname: str) -> bool:
    from app.tasks import celery  # after the stack set the broker's address

    if not worker.alive():
        raise BenchError(f"{worker.name} exited during start-up\n{worker.tail()}")
    return bool(celery.control.ping(destination=[hostname], timeout=0.5))
