"""Scenario 8, scale-out (issue 17, section 4): workers on three machines, one of them cut off.

Three Celery workers (`-P threads`), each in a network namespace of its own (bench/netns.py),
reach the host's PostgreSQL, Redis and a slow HTTP server (bench/slow_server.py) over their
veth links only. Each run is one `http_request` node that POSTs to that server, which answers
after `scale_out_delay_s`, with an `Idempotency-Key` of the run and node. Measured: one
worker's throughput on a batch, then three at once (`scale_out_efficiency` = three / 3 x one).
Then the cut: mid-batch, one namespace's link goes down. Every run must still finish on the
other two, within the lease (node timeout + grace) plus one sweep and one request; no node may
succeed twice; the server's counts show which requests were sent again (those in flight on the
cut link), which a receiver deduplicates by the key.

The short lease is the workers' environment (DUALMCP_NODE_TIMEOUT_S, DUALMCP_LEASE_GRACE_S,
DUALMCP_PENDING_REPUBLISH_S for a message lost on the link before any worker claimed it); the
sweep interval is beat's, so the stack's beat is swapped for one with a 1 s interval meanwhile.
A worker cut off mid-transaction leaves its PostgreSQL backend idle in a transaction holding
row locks (the sweeper's UPDATE would wait on them until TCP gives up, hours by default):
the namespaces' DATABASE_URL sets `idle_in_transaction_session_timeout`, as docs/scaling.md
advises for workers on other machines.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from typing import Any

import httpx
import redis
import sqlalchemy
from sqlalchemy.engine import make_url

from bench import netns
from bench.context import Bench, RunTimes
from bench.stack import BenchError, Process, Stack, free_port, wait_until

WORKFLOW_ID = "bench-scale-out"
WORKERS = 3
#: The workers' node timeout and lease grace: a lost node comes back within their sum.
NODE_TIMEOUT_S = 2.0
LEASE_GRACE_S = 1.0
LEASE_S = NODE_TIMEOUT_S + LEASE_GRACE_S
SWEEP_INTERVAL_S = 1.0
#: A message taken off the queue by the cut worker but never claimed is republished after this.
PENDING_REPUBLISH_S = 5.0
#: A cut-off worker's open transaction is ended by PostgreSQL after this (ms).
IDLE_IN_TRANSACTION_MS = 3000
HBA_MARK = "# dualmcp bench scale-out"
#: The slow server's delays spread over delay x (1 +- JITTER), as real latencies are: a batch
#: whose answers all came back in the same millisecond would measure that burst, not a worker.
JITTER = 0.3


def _workflow(port: int) -> dict[str, Any]:
    return {
        "workflow_id": WORKFLOW_ID,
        "name": "bench: one slow POST",
        "nodes": [
            {
                "id": "call",
                "type": "http_request",
                "params": {
                    "url": f"http://{netns.HOST_NAME}:{port}/effect",
                    "method": "POST",
                    "headers": {"Idempotency-Key": "{{ run.id }}:call"},
                    "json": {"run": "{{ run.id }}"},
                },
            }
        ],
    }


@contextmanager
def _services_open_to_namespaces(stack: Stack) -> Iterator[None]:
    """PostgreSQL accepts the namespaces' addresses (a pg_hba line, reloaded) and Redis serves
    clients that are not on loopback (protected mode off); both undone on the way out."""
    with stack.engine.connect() as connection:
        hba_file = connection.execute(sqlalchemy.text("SHOW hba_file")).scalar_one()
    admin = stack.engine.execution_options(isolation_level="AUTOCOMMIT")
    broker = redis.Redis.from_url(stack.redis_url)
    protected = broker.config_get("protected-mode").get("protected-mode") or "yes"

    def write_hba(extra: str) -> None:
        with open(hba_file) as source:
            lines = [line for line in source if HBA_MARK not in line]
        with open(hba_file, "w") as target:
            target.writelines(lines)
            target.write(extra)
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_reload_conf()"))

    write_hba(f"host all all 10.77.0.0/16 scram-sha-256 {HBA_MARK}\n")
    broker.config_set("protected-mode", "no")
    try:
        yield
    finally:
        broker.config_set("protected-mode", protected)
        write_hba("")


def _worker_env(stack: Stack, space: netns.Namespace) -> dict[str, str]:
    """The stack's app env with the database and broker reached over the namespace's link."""
    database = make_url(stack.database_url).set(host=space.host_address)
    options = f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}"
    database = database.update_query_dict({"options": options})
    redis_url = stack.redis_url.replace("127.0.0.1", space.host_address)
    return {
        **stack.app_env(),
        "DATABASE_URL": database.render_as_string(hide_password=False),
        "REDIS_URL": redis_url,
        "DUALMCP_HTTP_ALLOWLIST": "10.77.0.0/16",
        "DUALMCP_NODE_TIMEOUT_S": str(NODE_TIMEOUT_S),
        "DUALMCP_LEASE_GRACE_S": str(LEASE_GRACE_S),
        "DUALMCP_PENDING_REPUBLISH_S": str(PENDING_REPUBLISH_S),
        "DUALMCP_SOFT_SHUTDOWN_TIMEOUT_S": "0",
    }


def _queues_of(control: Any, hostname: str) -> list[str]:
    replies: Any = control.inspect(destination=[hostname], timeout=5).active_queues()
    return [queue["name"] for queue in (replies or {}).get(hostname) or []]


def _consume(hostnames: list[str], queues: list[str], on: bool) -> None:
    """Let the workers take messages, or stop them (Celery's add/cancel_consumer)."""
    from app.tasks import celery

    control = celery.control
    for queue in queues:
        change = control.add_consumer if on else control.cancel_consumer
        if not change(queue, destination=hostnames, reply=True, timeout=5):
            raise BenchError(f"workers {hostnames} did not answer about queue {queue}")


def _throughput(bench: Bench, count: int, timeout: float) -> tuple[float, list[str]]:
    """Runs per second on a batch of `count`, in its steady part: the runs finished between its
    10th and 90th percentile finish over that time (as the saturation scenario counts), so the
    batch's ramp-up and its last straggler do not weigh on one worker count more than another."""
    run_ids = bench.start_runs(WORKFLOW_ID, [{"i": index} for index in range(count)])
    if not bench.wait_for_runs(run_ids, timeout):
        raise BenchError(f"a batch of {count} runs did not finish within {timeout:g}s")
    times = list(bench.run_times(run_ids).values())
    if any(times_.status != "succeeded" for times_ in times):
        raise BenchError("a run of the scale-out batch did not succeed")
    finishes = sorted(t.finished or 0.0 for t in times)
    first, last = int(0.1 * count), int(0.9 * count)
    return (last - first) / max(finishes[last] - finishes[first], 1e-9), run_ids


def _connections(stack: Stack) -> dict[str, dict[str, int]]:
    """Connections per namespace address now: PostgreSQL backends and Redis clients (the
    budget docs/scaling.md sizes)."""
    with stack.engine.connect() as connection:
        rows = connection.execute(
            sqlalchemy.text(
                "SELECT host(client_addr), count(*) FROM pg_stat_activity"
                " WHERE client_addr << '10.77.0.0/16' GROUP BY 1"
            )
        )
        postgres = {str(address): int(count) for address, count in rows}
    clients: Any = redis.Redis.from_url(stack.redis_url).client_list()
    broker: dict[str, int] = {}
    for client in clients:
        address = str(client.get("addr", "")).rsplit(":", 1)[0]
        if address.startswith("10.77."):
            broker[address] = broker.get(address, 0) + 1
    return {"postgres": postgres, "redis": broker}


def _finished(times: RunTimes | None) -> float | None:
    return None if times is None else times.finished


def _node_rows(bench: Bench, run_ids: list[str]) -> list[Any]:
    with bench.stack.engine.connect() as connection:
        return list(
            connection.execute(
                sqlalchemy.text(
                    "SELECT run_id::text, status, redeliveries, attempts FROM node_runs"
                    " WHERE run_id = ANY(CAST(:ids AS uuid[]))"
                ),
                {"ids": run_ids},
            )
        )


def _cut(bench: Bench, stats: httpx.Client, victim: netns.Namespace, count: int) -> None:
    """A batch on three workers; one link cut while its worker's requests are in flight."""
    plan = bench.plan
    delay, concurrency = plan.scale_out_delay_s, plan.scale_out_concurrency
    stats.post("/stats/reset")
    run_ids = bench.start_runs(WORKFLOW_ID, [{"i": index} for index in range(count)])
    wait_until(
        lambda: stats.get("/stats").json()["peers"].get(victim.address, 0) >= concurrency,
        10,
        f"{concurrency} requests from {victim.name}",
        interval=0.01,
    )
    time.sleep(delay / 2)  # mid-request
    netns.set_link(victim, up=False)
    cut_at = time.time()
    at_cut = stats.get("/stats").json()
    bound_s = LEASE_S + SWEEP_INTERVAL_S + delay * (1 + JITTER)  # the longest request
    drain_s = count / (2 * concurrency) * delay
    finished = bench.wait_for_runs(run_ids, drain_s + PENDING_REPUBLISH_S + bound_s + 15)
    after = stats.get("/stats").json()
    times = bench.run_times(run_ids)
    lost = sum(1 for t in times.values() if t.status != "succeeded")
    rows = _node_rows(bench, run_ids)
    repeated_runs = {key.split(":")[0] for key, seen in after["keys"].items() if seen > 1}
    handed_back = {row[0] for row in rows if row[2] > 0}
    affected = repeated_runs | handed_back
    finishes = [end for run in affected if (end := _finished(times.get(run)))]
    recovery_s = max(finishes) - cut_at if finishes else None
    succeeded_nodes = sum(1 for row in rows if row[1] == "succeeded")
    earlier_successes = sum(
        1 for row in rows for attempt in row[3] or [] if not attempt.get("error")
    )
    bench.metrics["scale_out_cut_lost"] = lost
    bench.metrics["scale_out_cut_repeated_requests"] = sum(
        seen - 1 for seen in after["keys"].values() if seen > 1
    )
    bench.metrics["scale_out_cut_recovery_s"] = None if recovery_s is None else round(recovery_s, 2)
    bench.details["scale_out"]["cut"] = {
        "runs": count,
        "all_finished": finished,
        "runs_not_succeeded": lost,
        "nodes_succeeded": succeeded_nodes,
        "node_runs": len(rows),
        "earlier_attempts_without_error": earlier_successes,
        "distinct_keys_received": len(after["keys"]),
        "nodes_handed_back_by_the_sweeper": len(handed_back),
        "runs_whose_request_was_sent_twice": len(repeated_runs),
        "requests_from_cut_namespace_after_cut": after["peers"].get(victim.address, 0)
        - at_cut["peers"].get(victim.address, 0),
        "in_flight_at_cut": at_cut["in_flight"],
        "recovery_bound_s": bound_s,
        "last_run_finished_after_cut_s": round(
            max((t.finished or 0.0) for t in times.values()) - cut_at, 2
        ),
        "peers": after["peers"],
    }
    if not finished or lost:
        bench.notes.append(f"scale-out cut: {lost} of {count} runs did not succeed")
    if succeeded_nodes != count or len(rows) != count or earlier_successes:
        bench.notes.append("scale-out cut: a node succeeded twice or is missing")
    if recovery_s is not None and recovery_s > bound_s:
        bench.notes.append(
            f"scale-out cut: recovered in {recovery_s:.1f}s, past the {bound_s:g}s bound"
        )


def scale_out(bench: Bench) -> None:
    netns.require_tools()
    stack, plan = bench.stack, bench.plan
    delay, concurrency = plan.scale_out_delay_s, plan.scale_out_concurrency
    per_worker = plan.scale_out_runs_per_worker
    slow_port = free_port()
    python = sys.executable
    bench.details["scale_out"] = {
        "workers": WORKERS,
        "pool": f"threads, -c {concurrency}",
        "delay_s": delay,
        "runs_per_worker": per_worker,
        "lease_s": LEASE_S,
        "sweep_interval_s": SWEEP_INTERVAL_S,
        "pending_republish_s": PENDING_REPUBLISH_S,
        "idle_in_transaction_session_timeout_ms": IDLE_IN_TRANSACTION_MS,
        "network": "one netns per worker, veth to the host, nftables DNAT to 127.0.0.1",
    }
    hostname = stack.worker_hostname.split("@", 1)[1]
    with ExitStack() as cleanup:
        spaces = cleanup.enter_context(netns.namespaces(WORKERS, [stack.pg_port, stack.redis_port]))
        cleanup.enter_context(_services_open_to_namespaces(stack))
        processes: list[Process] = []

        def stop_all() -> None:
            for process in reversed(processes):
                process.stop(timeout=5)

        cleanup.callback(stop_all)

        def start(name: str, argv: list[str], env: dict[str, str]) -> Process:
            process = Process(name, argv, env, stack.log_dir)
            processes.append(process)
            process.start()
            return process

        hosts = [arg for space in spaces for arg in ("--host", space.host_address)]
        start(
            "scale_slow",
            [
                python,
                "-m",
                "bench.slow_server",
                f"--port={slow_port}",
                f"--delay={delay}",
                f"--jitter={JITTER}",
                *hosts,
            ],
            stack.app_env(),
        )
        workers = [f"scale{space.index}@{hostname}" for space in spaces]
        worker_processes = []
        for space, worker in zip(spaces, workers, strict=True):
            argv = [python, "-m", "celery", "-A", "app.tasks", "worker", "--loglevel=INFO"]
            argv += ["--pool=threads", f"--concurrency={concurrency}", f"--hostname={worker}"]
            env = _worker_env(stack, space)
            worker_processes.append(start(f"scale{space.index}", space.exec_argv(argv), env))
        # The stack's beat out, one with a short sweep interval in (restored on the way out).
        stack.processes["beat"].stop()
        cleanup.callback(stack.processes["beat"].start)
        beat_env = {**stack.app_env(), "DUALMCP_SWEEP_INTERVAL_S": str(SWEEP_INTERVAL_S)}
        beat_argv = [python, "-m", "celery", "-A", "app.tasks", "beat", "--loglevel=INFO"]
        start("scale_beat", [*beat_argv, f"--schedule={stack.state_dir / 'scale-beat'}"], beat_env)
        cleanup.enter_context(bench.workers_paused())

        stats = cleanup.enter_context(
            httpx.Client(base_url=f"http://{spaces[0].host_address}:{slow_port}", timeout=5)
        )
        from app.tasks import celery

        def ready(worker: str, process: Process) -> bool:
            if not process.alive():
                raise BenchError(f"{process.name} exited\n{process.tail()}")
            return bool(celery.control.ping(destination=[worker], timeout=0.5))

        wait_until(lambda: stats.get("/stats").status_code == 200, 15, "the slow server")
        for worker, process in zip(workers, worker_processes, strict=True):
            wait_until(partial(ready, worker, process), 90, f"worker {worker}")
        bench.put_workflow(_workflow(slow_port))
        queues = _queues_of(celery.control, workers[0])
        timeout = per_worker * WORKERS / concurrency * delay + 30

        _throughput(bench, 2 * concurrency * WORKERS, timeout)  # warm: every thread connected
        _consume(workers[1:], queues, on=False)
        one, _ = _throughput(bench, per_worker, timeout)
        _consume(workers[1:], queues, on=True)
        three, _ = _throughput(bench, per_worker * WORKERS, timeout)
        bench.details["scale_out"]["connections_per_worker"] = _connections(stack)
        ideal = concurrency / delay
        bench.metrics["scale_out_1_worker_runs_per_s"] = round(one, 1)
        bench.metrics["scale_out_3_workers_runs_per_s"] = round(three, 1)
        bench.metrics["scale_out_efficiency"] = round(three / (WORKERS * one), 3)
        bench.details["scale_out"]["ideal_runs_per_s_per_worker"] = ideal
        bench.details["scale_out"]["delay_jitter"] = JITTER

        peers = stats.get("/stats").json()["peers"]
        if set(peers) != {space.address for space in spaces}:
            raise BenchError(f"requests came from {sorted(peers)}, not only the namespaces")
        _cut(bench, stats, spaces[-1], 2 * per_worker)
    left = netns.leftovers()
    if left:
        bench.notes.append(f"scale-out: left behind: {', '.join(left)}")
