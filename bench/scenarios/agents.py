"""Scenario 5, agents: POST /api/mcp/process with the echo provider, memory cache hit and miss.

Runs only when the front end serves the endpoint (its OpenAPI document lists it). A miss is a
new session each time (nothing cached; memory is read from PostgreSQL); a hit is one warm
session asked again and again.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from bench.context import Bench
from bench.stack import BenchError
from bench.stats import summarize_ms

PATH = "/api/mcp/process"
AGENT_ID = "bench-agent"


def agents(bench: Bench) -> None:
    document = bench.api.get("/api/openapi.json")
    document.raise_for_status()
    if PATH not in (document.json().get("paths") or {}):
        bench.metrics["agent_p50_ms"] = None
        bench.notes.append(f"agents: {PATH} is not served yet (not in /api/openapi.json); skipped")
        return
    created = bench.api.post(
        "/api/agents",
        json={
            "agent_id": AGENT_ID,
            "agent_name": "Bench agent",
            "llm_config": {"provider": "echo"},
            "personality_traits": {"tone": "brief"},
        },
    )
    if created.status_code not in (200, 201, 409):
        raise BenchError(f"creating the bench agent: {created.status_code} {created.text[:300]}")

    def ask(session_id: str, index: int) -> float:
        body: dict[str, Any] = {
            "agent_id": AGENT_ID,
            "message": f"hello number {index}",
            "session_id": session_id,
        }
        start = time.perf_counter()
        response = bench.api.post(PATH, json=body)
        elapsed = time.perf_counter() - start
        if response.status_code != 200:
            raise BenchError(f"{PATH}: {response.status_code} {response.text[:300]}")
        return elapsed

    for index in range(bench.plan.warmup):
        ask(f"warm-{uuid.uuid4().hex}", index)
    misses = [ask(f"miss-{uuid.uuid4().hex}", i) for i in range(bench.plan.agent_requests)]
    session = f"hit-{uuid.uuid4().hex}"
    ask(session, -1)
    hits = [ask(session, i) for i in range(bench.plan.agent_requests)]
    hit, miss = summarize_ms(hits), summarize_ms(misses)
    bench.metrics["agent_p50_ms"] = hit["p50_ms"]
    bench.metrics["agent_miss_p50_ms"] = miss["p50_ms"]
    bench.details["agents"] = {"cache_hit": hit, "cache_miss": miss}
