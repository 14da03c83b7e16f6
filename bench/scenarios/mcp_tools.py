"""Scenario 6, MCP tools: what a tool call costs over starting the same run through the API,
and how long listing tools takes with 200 tool workflows.

- Call overhead: the same one-node workflow, one request at a time, alternately through
  `POST /api/workflow/execute` followed by polling `GET /api/runs/<id>` until it finished (a
  dashboard's way: the poll every 5 ms), and through an MCP `tools/call` that answers with the
  result (the official SDK client, modern protocol, one connection). Reported as p50 ms of each
  and their ratio (`mcp_call_over_execute_ratio`), measured in the same minutes.
- Tool list: 200 active workflows with a tool block, `tools/list` timed (`mcp_tools_list_p50_ms`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bench.context import Bench
from bench.stack import BenchError
from bench.stats import summarize_ms

TOOL_WORKFLOW = "bench-tool"
TOOL_NAME = "bench_tool"
LISTED_TOOLS = 200
_POLL_S = 0.005


def tool_workflow(workflow_id: str, tool_name: str) -> dict[str, Any]:
    """One transform node: the run's own work is negligible, so the path around it shows."""
    return {
        "workflow_id": workflow_id,
        "name": f"bench tool {tool_name}",
        "tool": {
            "name": tool_name,
            "description": "Echo a value back (benchmark)",
            "input_schema": {
                "type": "object",
                "properties": {"value": {"type": "integer"}},
                "required": ["value"],
            },
        },
        "nodes": [
            {"id": "echo", "type": "transform", "params": {"values": {"v": "{{ trigger.value }}"}}}
        ],
    }


def mcp_tools(bench: Bench) -> None:
    bench.put_workflow(tool_workflow(TOOL_WORKFLOW, TOOL_NAME))
    calls = bench.plan.agent_requests
    executed: list[float] = []
    called: list[float] = []

    async def measure(client: Client) -> None:
        for index in range(bench.plan.warmup):
            _execute_and_poll(bench.api, index)
            await _call(client, index)
        for index in range(calls):  # alternate, so the box's drift falls on both alike
            executed.append(_execute_and_poll(bench.api, index))
            called.append(await _call(client, index))

    _with_client(bench, measure)
    execute, call = summarize_ms(executed), summarize_ms(called)
    bench.metrics["mcp_execute_poll_p50_ms"] = execute["p50_ms"]
    bench.metrics["mcp_tool_call_p50_ms"] = call["p50_ms"]
    if call["p50_ms"] is not None and execute["p50_ms"]:
        ratio = round(call["p50_ms"] / execute["p50_ms"], 2)
        bench.metrics["mcp_call_over_execute_ratio"] = ratio
    bench.details["mcp_tools"] = {"execute_and_poll": execute, "tool_call": call}

    for index in range(LISTED_TOOLS - 1):
        bench.put_workflow(tool_workflow(f"bench-tool-{index}", f"bench_tool_{index}"))
    listed: list[float] = []
    counts: list[int] = []

    async def list_tools(client: Client) -> None:
        for _ in range(bench.plan.warmup):
            await client.list_tools()
        for _ in range(calls):
            start = time.perf_counter()
            result = await client.list_tools()
            listed.append(time.perf_counter() - start)
            counts.append(len(result.tools))

    _with_client(bench, list_tools)
    if min(counts) < LISTED_TOOLS:
        raise BenchError(f"tools/list showed {min(counts)} tools, expected {LISTED_TOOLS}+")
    summary = summarize_ms(listed)
    bench.metrics["mcp_tools_list_p50_ms"] = summary["p50_ms"]
    bench.details["mcp_tools"]["tools_list"] = {**summary, "tools": min(counts)}


def _execute_and_poll(api: httpx.Client, value: int) -> float:
    start = time.perf_counter()
    started = api.post(
        "/api/workflow/execute", json={"workflow_id": TOOL_WORKFLOW, "input": {"value": value}}
    )
    if started.status_code != 202:
        raise BenchError(f"execute: {started.status_code} {started.text[:300]}")
    status_url = started.json()["status_url"]
    deadline = start + 30
    while time.perf_counter() < deadline:
        run = api.get(status_url).json()
        if run["status"] == "succeeded":
            return time.perf_counter() - start
        if run["status"] in ("failed", "cancelled"):
            raise BenchError(f"run {run['run_id']} {run['status']}: {run['error']}")
        time.sleep(_POLL_S)
    raise BenchError(f"run at {status_url} did not finish in 30 s")


async def _call(client: Client, value: int) -> float:
    start = time.perf_counter()
    result = await client.call_tool(TOOL_NAME, {"value": value})
    elapsed = time.perf_counter() - start
    structured = result.structured_content or {}
    if result.is_error or structured.get("status") != "succeeded":
        raise BenchError(f"tools/call: {structured or result.content}")
    return elapsed


def _with_client(bench: Bench, work: Callable[[Client], Awaitable[None]]) -> None:
    """Run `work` with one SDK client connected to the stack's /mcp, as an MCP host would."""

    async def main() -> None:
        headers = {"Authorization": f"Bearer {bench.stack.admin_key}"}
        async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
            transport = streamable_http_client(f"{bench.stack.web_url}/mcp", http_client=http)
            async with Client(transport) as client:
                await work(client)

    anyio.run(main)
