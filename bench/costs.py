"""What a phase of the bench cost: CPU per process group, SQL statements, Redis commands, tasks.

Take a `Reading` before and after a phase; `phase_cost` divides the difference by the units of
work done (tasks, nodes, runs, triggers). SQL statements come from pg_stat_statements for the
app's role only (the harness connects as `postgres`, so its own queries are not counted);
Redis commands from INFO commandstats (everyone's: the harness adds a few); Celery task counts
from the worker's `inspect stats`.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import redis
import sqlalchemy

from bench import procfs
from bench.stack import Stack
from bench.stats import rounded

#: Process groups that make up the system under test (the echo server is the outside world).
SUT = ("web", "worker", "beat", "postgres", "redis")


@dataclass
class Reading:
    at: float
    cpu: dict[str, float]
    machine_cpu: float
    #: queryid -> (query text, calls)
    statements: dict[int, tuple[str, int]]
    redis_calls: dict[str, int]
    tasks: dict[str, int]


def take_reading(stack: Stack, roots: dict[str, int], *, tasks: bool = True) -> Reading:
    statements: dict[int, tuple[str, int]] = {}
    with stack.engine.connect() as connection:
        rows = connection.execute(
            sqlalchemy.text(
                "SELECT s.queryid, s.query, s.calls FROM pg_stat_statements s"
                " JOIN pg_roles r ON r.oid = s.userid"
                " JOIN pg_database d ON d.oid = s.dbid"
                " WHERE r.rolname = :role AND d.datname = current_database()"
            ),
            {"role": stack.app_role},
        )
        for queryid, query, calls in rows:
            statements[int(queryid)] = (str(query), int(calls))
    info: Any = redis.Redis.from_url(stack.redis_url).info("commandstats")
    redis_calls = {
        name.removeprefix("cmdstat_"): int(stat["calls"])
        for name, stat in info.items()
        if isinstance(stat, dict)
    }
    return Reading(
        at=time.time(),
        cpu={name: procfs.tree_cpu_seconds(pid) for name, pid in roots.items()},
        machine_cpu=procfs.total_cpu_seconds(),
        statements=statements,
        redis_calls=redis_calls,
        tasks=worker_task_totals(stack) if tasks else {},
    )


def worker_task_totals(stack: Stack) -> dict[str, int]:
    """Tasks the dualmcp worker ran so far, by name ({} if it did not answer in time)."""
    from app.tasks import celery

    replies: Any = celery.control.inspect(destination=[stack.worker_hostname], timeout=3).stats()
    stats: dict[str, Any] = (replies or {}).get(stack.worker_hostname) or {}
    return {str(name): int(count) for name, count in (stats.get("total") or {}).items()}


def combined(pairs: list[tuple[Reading, Reading]]) -> tuple[Reading, Reading]:
    """Several (before, after) phases as one: the first reading, and it plus every phase's
    difference, so phase_cost over the pair counts only what happened inside the phases."""
    first = pairs[0][0]

    def summed(field: str) -> dict[Any, Any]:
        total: Counter[Any] = Counter()
        for before, after in pairs:
            for key, value in getattr(after, field).items():
                total[key] += value - getattr(before, field).get(key, 0)
        return {key: getattr(first, field).get(key, 0) + delta for key, delta in total.items()}

    statements: dict[int, tuple[str, int]] = {}
    for before, after in pairs:
        for queryid, (query, calls) in after.statements.items():
            delta = calls - before.statements.get(queryid, ("", 0))[1]
            base = statements.get(queryid, (query, first.statements.get(queryid, ("", 0))[1]))
            statements[queryid] = (query, base[1] + delta)
    end = Reading(
        at=first.at + sum(after.at - before.at for before, after in pairs),
        cpu=summed("cpu"),
        machine_cpu=first.machine_cpu + sum(a.machine_cpu - b.machine_cpu for b, a in pairs),
        statements=statements,
        redis_calls=summed("redis_calls"),
        tasks=summed("tasks"),
    )
    return first, end


def phase_cost(
    before: Reading,
    after: Reading,
    units: int,
    unit: str,
    *,
    groups: tuple[str, ...] = SUT,
) -> dict[str, Any]:
    """Per-`unit` costs between two readings; the CPU total covers `groups` only."""
    per = max(units, 1)
    cpu_ms = {
        name: (after.cpu.get(name, 0.0) - before.cpu.get(name, 0.0)) * 1000 / per
        for name in after.cpu
    }
    statements: Counter[str] = Counter()
    by_text: Counter[str] = Counter()
    for queryid, (query, calls) in after.statements.items():
        delta = calls - before.statements.get(queryid, ("", 0))[1]
        if delta > 0:
            statements[_verb(query)] += delta
            by_text[" ".join(query.split())[:160]] += delta
    redis_calls = Counter(
        {
            name: calls - before.redis_calls.get(name, 0)
            for name, calls in after.redis_calls.items()
            if calls > before.redis_calls.get(name, 0) and name not in ("info", "ping")
        }
    )
    tasks = sum(after.tasks.values()) - sum(before.tasks.values()) if after.tasks else None
    return {
        "units": units,
        "unit": unit,
        "seconds": rounded(after.at - before.at, 3),
        "cpu_ms_per_unit": rounded(sum(cpu_ms.get(name, 0.0) for name in groups), 3),
        "cpu_ms_per_unit_by_process": {name: rounded(ms, 3) for name, ms in cpu_ms.items()},
        "machine_busy_ms_per_unit": rounded(
            (after.machine_cpu - before.machine_cpu) * 1000 / per, 3
        ),
        "sql_statements_per_unit": rounded(sum(statements.values()) / per, 2),
        "sql_by_kind_per_unit": {k: rounded(v / per, 2) for k, v in statements.most_common()},
        "sql_top_statements_per_unit": {
            text: rounded(count / per, 2) for text, count in by_text.most_common(12)
        },
        "redis_commands_per_unit": rounded(sum(redis_calls.values()) / per, 2),
        "redis_by_command_per_unit": {
            k: rounded(v / per, 2) for k, v in redis_calls.most_common(12)
        },
        "celery_tasks_per_unit": None if tasks is None else rounded(tasks / per, 3),
    }


def _verb(query: str) -> str:
    words = query.split()
    return words[0].upper() if words else "?"
