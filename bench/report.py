"""The results: a table on stdout and `bench/results/latest.json`."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import redis
import sqlalchemy

from bench.context import Bench
from bench.stack import GUNICORN_WORKERS, REPO

RESULTS = REPO / "bench" / "results"

Check = Callable[[float, dict[str, Any]], bool]


def _at_most(limit: float) -> Check:
    return lambda value, _metrics: value <= limit


def _at_least(limit: float) -> Check:
    return lambda value, _metrics: value >= limit


#: (key, what it is, unit, the issue's target or reference, check)
ROWS: list[tuple[str, str, str, str, Check | None]] = [
    ("pg_commit_ms", "box: 1-row INSERT txn, durable", "ms", "ref ~0.35", None),
    ("pg_commit_async_ms", "box: same, synchronous_commit off", "ms", "ref ~0.18", None),
    ("redis_round_trip_ms", "box: one Redis round trip", "ms", "", None),
    ("celery_chain_ms_per_task", "raw Celery chain: latency per task", "ms", "ref ~2.8", None),
    ("celery_chain_cpu_ms_per_task", "raw Celery chain: CPU per task", "ms", "ref ~2.4", None),
    ("durable_chain_ms_per_task", "durable Celery chain: latency per task", "ms", "", None),
    ("durable_chain_cpu_ms_per_task", "durable Celery chain: CPU per task", "ms", "", None),
    ("node_ms", "http_request node: latency per node", "ms", "", None),
    ("node_cpu_ms", "http_request node: CPU per node", "ms", "", None),
    ("node_overhead_ratio", "node_ms / Celery task", "x", "<= 1.5", _at_most(1.5)),
    ("node_durable_ratio", "node_ms / durable Celery task", "x", "<= 1.0", _at_most(1.0)),
    ("control_node_ms", "control node (inline): time per node", "ms", "", None),
    ("control_node_ratio", "control_node_ms / Celery task", "x", "<= 0.25", _at_most(0.25)),
    ("ingest_per_s", "signed triggers accepted", "/s", ">= 900", _at_least(900)),
    ("ingest_p99_ms", "trigger answer p99", "ms", "<= 15", _at_most(15)),
    ("ingest_floor_per_s", "floor: Flask + gunicorn + send_task", "/s", "ref ~1800", None),
    ("ingest_floor_p99_ms", "floor: answer p99", "ms", "ref ~7.5", None),
    ("ingest_floor_fraction", "ingest_per_s / floor", "x", ">= 0.5", _at_least(0.5)),
    ("e2e_p50_ms", "trigger to done p50 @ 20 runs/s", "ms", "<= 15", _at_most(15)),
    ("e2e_p99_ms", "trigger to done p99 @ 20 runs/s", "ms", "<= 50", _at_most(50)),
    ("runs_per_s", "4-node runs completed at saturation", "/s", ">= 100", _at_least(100)),
    ("cpu_ms_per_run", "CPU per run, all processes", "ms", "", None),
    ("status_poll_p99_ms", "GET /api/runs/<id> p99 @ 100/s", "ms", "<= 10", _at_most(10)),
    ("overload_admitted_p99_ms", "overload: admitted p99 to done", "ms", "<= 2000", _at_most(2000)),
    (
        "overload_median_finish_fraction",
        "overload: median run done at",
        "of drain",
        "<= 0.6",
        _at_most(0.6),
    ),
    ("overload_refused", "overload: 429/503 answers", "", "", None),
    ("overload_lost", "overload: admitted runs lost", "", "0", _at_most(0)),
    (
        "overload_goodput_fraction",
        "flood of 64: runs done/s / runs_per_s",
        "x",
        ">= 0.8",
        _at_least(0.8),
    ),
    ("overload_goodput_bound", "best fraction if refusals were free", "x", "", None),
    ("overload_goodput_of_bound", "flood: fraction / that bound", "x", "", None),
    ("refused_cpu_ratio", "web CPU: refused / accepted trigger", "x", "<= 0.2", _at_most(0.2)),
    ("goodput_lost", "flood: accepted runs lost", "", "0", _at_most(0)),
    ("agent_p50_ms", "agent reply p50, memory cache hit", "ms", "", None),
    ("agent_miss_p50_ms", "agent reply p50, memory cache miss", "ms", "", None),
    ("mcp_execute_poll_p50_ms", "execute + poll to done p50", "ms", "", None),
    ("mcp_tool_call_p50_ms", "MCP tools/call to result p50", "ms", "", None),
    ("mcp_call_over_execute_ratio", "tools/call / execute + poll", "x", "", None),
    ("mcp_tools_list_p50_ms", "MCP tools/list p50, 200 tools", "ms", "", None),
    ("slow_nodes_in_flight", "1 s LLM nodes in flight, 1 process", "", ">= 100", _at_least(100)),
    ("slow_p99_vs_ideal", "500 of them: p99 / (500/in flight x 1 s)", "x", "<= 1.5", _at_most(1.5)),
    ("slow_io_runs_per_s", "slow nodes: -P threads -c 100", "/s", "", None),
    ("slow_prefork_runs_per_s", "slow nodes: prefork -c 4", "/s", "", None),
    ("slow_io_speedup", "slow nodes: threads / prefork", "x", "", None),
    ("slow_kb_per_in_flight", "threads worker RSS per in-flight node", "KB", "", None),
    ("slow_cpu_ms_per_node", "slow node CPU (worker, PG, Redis)", "ms", "", None),
    ("db_round_trips_per_node", "DB round trips per control node", "", "", None),
    ("scale_out_1_worker_runs_per_s", "scale-out: 1 worker (netns), slow POST", "/s", "", None),
    ("scale_out_3_workers_runs_per_s", "scale-out: 3 workers, 3 netns", "/s", "", None),
    ("scale_out_efficiency", "3 workers / (3 x 1 worker)", "x", ">= 0.8", _at_least(0.8)),
    ("scale_out_cut_recovery_s", "link cut: last affected run done", "s", "", None),
    ("scale_out_cut_lost", "link cut: runs not succeeded", "", "0", _at_most(0)),
    ("scale_out_cut_repeated_requests", "link cut: requests sent twice", "", "", None),
]


def table(metrics: dict[str, Any]) -> str:
    lines = [f"{'metric':<34} {'value':>10} {'unit':<9} {'target':<10} ok", "-" * 68]
    for key, _what, unit, target, check in ROWS:
        value = metrics.get(key)
        shown = "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
        verdict = "" if value is None or check is None else "yes" if check(value, metrics) else "NO"
        lines.append(f"{key:<34} {shown:>10} {unit:<9} {target:<10} {verdict}")
    return "\n".join(lines)


def versions(bench: Bench) -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in (
        "celery",
        "kombu",
        "sqlalchemy",
        "psycopg",
        "flask",
        "gunicorn",
        "redis",
        "httpx",
        "pydantic",
    ):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    found["redis_client"] = found.pop("redis")
    try:
        with bench.stack.engine.connect() as connection:
            found["postgres"] = connection.execute(sqlalchemy.text("SHOW server_version")).scalar()
        info: Any = redis.Redis.from_url(bench.stack.redis_url).info("server")
        found["redis"] = str(info["redis_version"])
    except Exception:
        found.setdefault("postgres", None)
        found.setdefault("redis", None)
    return found


def machine() -> dict[str, Any]:
    cpu_model = None
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    memory_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
    }


def settings(bench: Bench) -> dict[str, Any]:
    postgres: dict[str, Any] = {}
    try:
        with bench.stack.engine.connect() as connection:
            for name in ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers"):
                postgres[name] = connection.execute(sqlalchemy.text(f"SHOW {name}")).scalar()
    except Exception:
        pass
    commands = {name: " ".join(process.argv[1:]) for name, process in bench.stack.processes.items()}
    return {
        "gunicorn_workers": GUNICORN_WORKERS,
        "celery_worker": "prefork, default concurrency (one per core), acks_late",
        "commands": commands,
        "postgres": postgres,
        "app_env_overrides": dict(bench.stack.extra_env),
    }


def git_state() -> dict[str, Any]:
    def run(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
        )
        return done.stdout.strip()

    return {"commit": run("rev-parse", "HEAD"), "dirty": bool(run("status", "--porcelain"))}


def write(bench: Bench, extra: dict[str, Any], path: Path | None = None) -> Path:
    """latest.json: the issue's keys at the top level, then where and how they were measured."""
    path = path or RESULTS / "latest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        **bench.metrics,
        "quick": bench.plan.quick,
        **extra,
        "versions": versions(bench),
        "machine": machine(),
        "settings": settings(bench),
        "git": git_state(),
        "notes": bench.notes,
        "details": bench.details,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path
