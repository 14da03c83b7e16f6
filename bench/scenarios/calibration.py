"""What the box itself costs: one durable PostgreSQL commit, with and without waiting for the
WAL flush, and one Redis round trip. Context for every number after it (the issue measured
0.35 ms and 0.18 ms per commit on its box)."""

from __future__ import annotations

import time

import redis
import sqlalchemy

from bench.context import Bench
from bench.stats import percentile, rounded

SAMPLES = 200


def _commit_ms(bench: Bench, synchronous_commit: str) -> float | None:
    engine = bench.stack.engine
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f"SET synchronous_commit = {synchronous_commit}"))
        connection.commit()
        timings = []
        for index in range(SAMPLES):
            start = time.perf_counter()
            connection.execute(
                sqlalchemy.text("INSERT INTO bench_commit_probe (n) VALUES (:n)"), {"n": index}
            )
            connection.commit()
            timings.append((time.perf_counter() - start) * 1000)
        connection.execute(sqlalchemy.text("RESET synchronous_commit"))
        connection.commit()
    return rounded(percentile(timings, 50), 3)


def calibration(bench: Bench) -> None:
    with bench.stack.engine.begin() as connection:
        connection.execute(sqlalchemy.text("CREATE TABLE bench_commit_probe (n integer)"))
    try:
        bench.metrics["pg_commit_ms"] = _commit_ms(bench, "on")
        bench.metrics["pg_commit_async_ms"] = _commit_ms(bench, "off")
    finally:
        with bench.stack.engine.begin() as connection:
            connection.execute(sqlalchemy.text("DROP TABLE bench_commit_probe"))
    client = redis.Redis.from_url(bench.stack.redis_url)
    pings = []
    for _ in range(SAMPLES):
        start = time.perf_counter()
        client.ping()
        pings.append((time.perf_counter() - start) * 1000)
    bench.metrics["redis_round_trip_ms"] = rounded(percentile(pings, 50), 3)
