"""How much of each scenario to run: the full benchmark, or `--quick` (about 2.5 min, for CI)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    quick: bool
    #: Untimed runs before each latency series, so every pool process is warm.
    warmup: int
    #: Serial chains / runs timed in scenarios 1 and 2.
    serial_runs: int
    #: Scenario 4: runs per second offered for the latency test, and for how long.
    e2e_rate: float
    e2e_seconds: float
    #: Scenario 3: signed triggers sent (closed loop), and the most time they may take.
    ingest_requests: int
    ingest_max_seconds: float
    #: Scenario 4: the saturation backlog is sized to drain in about this long (below the
    #: sweeper's 10 s republish threshold), and may take at most drain_timeout_s.
    saturation_seconds: float
    drain_timeout_s: float
    #: Scenario 4: GET /api/runs/<id> per second during the saturation test.
    poll_rate: float
    #: Scenario 4: twice the sustained rate is offered for this long; then admitted runs drain.
    overload_seconds: float
    overload_drain_timeout_s: float
    #: Scenario 5: requests timed per case (cache hit, cache miss).
    agent_requests: int
    #: Scenario 4d (goodput): seconds of flood, and of each cost phase (accepted, refused).
    goodput_seconds: int
    goodput_phase_seconds: float
    #: Scenario 8 (scale-out): each worker's thread pool (-c), the slow server's delay, and the
    #: runs per worker in a timed batch (the cut's batch is twice this).
    scale_out_concurrency: int
    scale_out_delay_s: float
    scale_out_runs_per_worker: int
    #: Scenario 7 (slow nodes): runs of the 1 s LLM node on the I/O pool, and prefork's sample
    #: (at 4 a second it stays below the sweeper's 10 s republish threshold).
    slow_runs: int
    slow_prefork_runs: int
    #: The whole run is stopped (and everything it started) past this many seconds.
    deadline_s: float


FULL = Plan(
    quick=False,
    warmup=10,
    serial_runs=200,
    e2e_rate=20.0,
    e2e_seconds=20.0,
    ingest_requests=5000,
    ingest_max_seconds=30.0,
    saturation_seconds=7.0,
    drain_timeout_s=120.0,
    poll_rate=100.0,
    overload_seconds=20.0,
    overload_drain_timeout_s=240.0,
    agent_requests=200,
    goodput_seconds=20,
    goodput_phase_seconds=4.0,
    scale_out_concurrency=10,
    scale_out_delay_s=1.0,
    scale_out_runs_per_worker=50,
    slow_runs=500,
    slow_prefork_runs=32,
    deadline_s=1500.0,
)

QUICK = Plan(
    quick=True,
    warmup=4,
    serial_runs=20,
    e2e_rate=20.0,
    e2e_seconds=4.0,
    ingest_requests=500,
    ingest_max_seconds=8.0,
    saturation_seconds=3.0,
    drain_timeout_s=25.0,
    poll_rate=100.0,
    overload_seconds=4.0,
    overload_drain_timeout_s=20.0,
    agent_requests=20,
    goodput_seconds=8,
    goodput_phase_seconds=2.0,
    scale_out_concurrency=10,
    scale_out_delay_s=1.0,
    scale_out_runs_per_worker=30,
    slow_runs=500,
    slow_prefork_runs=12,
    deadline_s=300.0,
)
