"""A worker killed with SIGKILL mid-node: a new worker finishes every run, keys stay per node.

The killed worker never acknowledges its message, so the broker hands it back after the
visibility timeout, and the sweeper returns the expired lease to pending; whichever comes first,
the node runs again under the same idempotency key.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select

from app.drivers.base import idempotency_key
from app.models import NodeRun
from tests.http_peer import HttpPeer
from tests.integration.conftest import Stack, finished_run, launch

RUNS = 3


def test_killed_worker_loses_no_run_and_keys_each_side_effect_once_per_node(
    stack: Stack, http_peer: HttpPeer
) -> None:
    http_peer.reply("/lost/slow", json={"ok": True}, delay_s=2)
    definition = {
        "workflow_id": "worker-lost",
        "nodes": [
            {
                "id": "before",
                "type": "webhook",
                "params": {
                    "url": f"{http_peer.url}/lost/before",
                    "payload": {"run": "{{ run.id }}"},
                },
                "next": "slow",
            },
            {
                "id": "slow",
                "type": "http_request",
                "params": {"url": f"{http_peer.url}/lost/slow"},
                "timeout_s": 4,
                "next": "after",
            },
            {
                "id": "after",
                "type": "webhook",
                "params": {
                    "url": f"{http_peer.url}/lost/after",
                    "payload": {"run": "{{ run.id }}"},
                },
            },
        ],
    }
    run_ids = [launch(stack, definition, {"n": n}) for n in range(RUNS)]

    def slow_node_mid_request() -> bool:
        # Its request has reached the peer (which holds the answer 2 s): killing the worker
        # now interrupts a node in flight. A node merely claimed may not have sent it yet.
        if not http_peer.requests_to("/lost/slow"):
            return False
        with stack.sessions() as session:
            running = session.scalar(
                select(func.count()).where(NodeRun.node_id == "slow", NodeRun.status == "running")
            )
        return bool(running)

    stack.wait_for(slow_node_mid_request, 30, what="a slow node to be mid-request")
    stack.kill_worker()
    stack.start_worker()

    runs = [finished_run(stack, run_id, timeout=60) for run_id in run_ids]

    assert [run["status"] for run in runs] == ["succeeded"] * RUNS, stack.tail_logs()
    keys_by_node: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path, node_id in (("/lost/before", "before"), ("/lost/after", "after")):
        for request in http_peer.requests_to(path):
            assert request.headers["webhook-id"] == request.headers["idempotency-key"]
            keys_by_node[(request.json["run"], node_id)].add(request.headers["webhook-id"])
    for run_id in run_ids:
        for node_id in ("before", "after"):
            assert keys_by_node[(run_id, node_id)] == {idempotency_key(run_id, node_id)}
    assert len(http_peer.requests_to("/lost/slow")) > RUNS  # some slow node really ran twice
