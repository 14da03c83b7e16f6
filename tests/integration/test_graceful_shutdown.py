"""SIGTERM to a worker (what `docker compose stop` and Kubernetes send): a node that finishes
within the soft-shutdown timeout finishes; one that does not is handed back at once to another
worker, without waiting for its lease to expire and without counting as a lost worker.

On the private services: a worker of another session sharing a broker could take the node."""

from __future__ import annotations

import time
import uuid

from app.models import NodeRun
from app.workflows import save_workflow
from tests.http_peer import HttpPeer
from tests.integration.conftest import STACK_ENV, Stack, execute, finished_run

SOFT_TIMEOUT_S = float(STACK_ENV["DUALMCP_SOFT_SHUTDOWN_TIMEOUT_S"])


def _one_call(workflow_id: str, url: str) -> dict:
    return {
        "workflow_id": workflow_id,
        "nodes": [
            {
                "id": "call",
                "type": "http_request",
                "params": {"url": url},
                "timeout_s": 60,  # its lease would last 61 s: far beyond this test
                "next": "done",
            },
            {"id": "done", "type": "transform", "params": {"values": {"ok": True}}},
        ],
    }


def _call(stack: Stack, run_id: str) -> NodeRun:
    with stack.sessions() as session:
        row = session.get(NodeRun, (uuid.UUID(run_id), "call"))
        assert row is not None
        return row


def _start(stack: Stack, web_url: str, definition: dict) -> str:
    with stack.sessions.begin() as session:
        save_workflow(session, definition)
    response = execute(web_url, definition["workflow_id"])
    assert response.status_code == 202, response.text
    return str(response.json()["run_id"])


def test_sigterm_finishes_short_nodes_and_hands_long_ones_back(
    private_stack: Stack, private_web_url: str, http_peer: HttpPeer
) -> None:
    stack = private_stack
    http_peer.reply("/shutdown/short", json={"ok": True}, delay_s=0.5)
    http_peer.reply("/shutdown/long", json={"ok": True}, delay_s=30)
    short = _start(
        stack, private_web_url, _one_call("shutdown-short", f"{http_peer.url}/shutdown/short")
    )
    long = _start(
        stack, private_web_url, _one_call("shutdown-long", f"{http_peer.url}/shutdown/long")
    )
    stack.wait_for(
        lambda: _call(stack, short).status == "running" and _call(stack, long).status == "running",
        20,
        what="both nodes to be running",
    )

    assert stack.worker is not None
    stopping, stopped_at = stack.worker, time.monotonic()
    stopping.terminate()  # SIGTERM: Celery's warm shutdown
    stopping.wait(timeout=SOFT_TIMEOUT_S + 15)
    stopped_in = time.monotonic() - stopped_at
    stack.worker = None

    assert stopped_in < SOFT_TIMEOUT_S + 10, stack.tail_logs()
    assert finished_run(stack, short, timeout=5)["status"] == "succeeded"  # by the old worker
    handed = _call(stack, long)
    assert (handed.status, handed.attempt, handed.redeliveries) == ("pending", 0, 0)

    http_peer.reply("/shutdown/long", json={"ok": True})
    stack.start_worker()
    run = finished_run(stack, long, timeout=20)

    assert run["status"] == "succeeded", stack.tail_logs()
    assert (run["by_node"]["call"]["attempt"], _call(stack, long).redeliveries) == (1, 0)
    assert len(http_peer.requests_to("/shutdown/long")) == 2
