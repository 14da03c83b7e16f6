"""The scenarios of issue 4, in the order they run, all on one broker and one database.

Each takes the Bench and fills in its metrics, details and notes; the light ones run first so
a backlog left by a heavy one cannot skew them.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.context import Bench
from bench.scenarios.agents import agents
from bench.scenarios.calibration import calibration
from bench.scenarios.chain import durable_celery_chain, raw_celery_chain
from bench.scenarios.e2e import end_to_end_latency
from bench.scenarios.goodput import goodput
from bench.scenarios.ingest import ingest
from bench.scenarios.mcp_tools import mcp_tools
from bench.scenarios.nodes import control_nodes, db_round_trips, http_nodes
from bench.scenarios.overload import overload
from bench.scenarios.saturation import saturation
from bench.scenarios.scale_out import scale_out
from bench.scenarios.slow_nodes import slow_nodes

Scenario = Callable[[Bench], None]

SCENARIOS: list[tuple[str, Scenario]] = [
    ("0. calibration", calibration),
    ("1. raw Celery chain", raw_celery_chain),
    ("1. durable Celery chain", durable_celery_chain),
    ("2. http_request nodes", http_nodes),
    ("2. control nodes", control_nodes),
    ("   db round trips", db_round_trips),
    ("4. end to end at 20 runs/s", end_to_end_latency),
    ("5. agents", agents),
    ("6. mcp tools", mcp_tools),
    ("7. slow nodes", slow_nodes),
    ("3. ingest", ingest),
    ("4. saturation", saturation),
    ("4. overload", overload),
    ("4. goodput under overload", goodput),
    ("8. scale-out", scale_out),
]
