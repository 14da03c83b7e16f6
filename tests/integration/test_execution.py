"""Workflows on the real stack: a Celery worker process, PostgreSQL and Redis."""

from __future__ import annotations

import uuid

from app.tasks.runtime import publish
from tests.http_peer import HttpPeer
from tests.integration.conftest import Stack, finished_run, launch


def _branching_workflow(peer: HttpPeer, workflow_id: str) -> dict:
    return {
        "workflow_id": workflow_id,
        "name": "fetch, branch, join",
        "nodes": [
            {
                "id": "fetch",
                "type": "data_fetch",
                "params": {"url": f"{peer.url}/{workflow_id}/lead/{{{{ trigger.lead }}}}"},
                "next": "check",
            },
            {
                "id": "check",
                "type": "conditional",
                "params": {"condition": "nodes.fetch.json.score >= 80"},
                "then": "hot",
                "else": "cold",
            },
            {
                "id": "hot",
                "type": "webhook",
                "params": {
                    "url": f"{peer.url}/{workflow_id}/hot",
                    "payload": {"lead": "{{ trigger.lead }}"},
                },
                "next": "join",
            },
            {
                "id": "cold",
                "type": "webhook",
                "params": {
                    "url": f"{peer.url}/{workflow_id}/cold",
                    "payload": {"lead": "{{ trigger.lead }}"},
                },
                "next": "join",
            },
            {
                "id": "join",
                "type": "webhook",
                "params": {
                    "url": f"{peer.url}/{workflow_id}/join",
                    "payload": {"run": "{{ run.id }}", "score": "{{ nodes.fetch.json.score }}"},
                },
            },
        ],
    }


def test_untaken_branch_is_skipped_and_join_runs_once(stack: Stack, http_peer: HttpPeer) -> None:
    workflow_id = "branching-hot"
    http_peer.reply(f"/{workflow_id}/lead/42", json={"score": 91})
    run_id = launch(stack, _branching_workflow(http_peer, workflow_id), {"lead": 42})

    run = finished_run(stack, run_id)

    assert run["status"] == "succeeded", run
    statuses = {node_id: node["status"] for node_id, node in run["by_node"].items()}
    assert statuses == {
        "fetch": "succeeded",
        "check": "succeeded",
        "hot": "succeeded",
        "cold": "skipped",
        "join": "succeeded",
    }
    assert run["by_node"]["check"]["output"] == {"result": True, "branch": "then"}
    assert len(http_peer.requests_to(f"/{workflow_id}/hot")) == 1
    assert http_peer.requests_to(f"/{workflow_id}/cold") == []
    joins = http_peer.requests_to(f"/{workflow_id}/join")
    assert [request.json for request in joins] == [{"run": run_id, "score": 91}]


def test_else_branch_runs_for_a_low_score(stack: Stack, http_peer: HttpPeer) -> None:
    workflow_id = "branching-cold"
    http_peer.reply(f"/{workflow_id}/lead/7", json={"score": 10})
    run_id = launch(stack, _branching_workflow(http_peer, workflow_id), {"lead": 7})

    run = finished_run(stack, run_id)

    assert run["status"] == "succeeded", run
    assert run["by_node"]["hot"]["status"] == "skipped"
    assert run["by_node"]["cold"]["status"] == "succeeded"
    assert len(http_peer.requests_to(f"/{workflow_id}/join")) == 1


def test_node_failing_twice_then_succeeding_under_its_retry_policy(
    stack: Stack, http_peer: HttpPeer
) -> None:
    http_peer.reply("/flaky", json={"ok": True}, fail_times=2, fail_status=503)
    definition = {
        "workflow_id": "flaky",
        "nodes": [
            {
                "id": "call",
                "type": "http_request",
                "params": {"url": f"{http_peer.url}/flaky"},
                "retry": {"max_attempts": 3, "backoff_s": 0.2, "jitter": False},
            }
        ],
    }
    run_id = launch(stack, definition, {})

    run = finished_run(stack, run_id)

    assert run["status"] == "succeeded", run
    assert run["by_node"]["call"]["attempt"] == 3
    assert run["by_node"]["call"]["output"]["json"] == {"ok": True}
    assert len(http_peer.requests_to("/flaky")) == 3


def test_retries_exhausted_fail_the_run_with_the_last_error(
    stack: Stack, http_peer: HttpPeer
) -> None:
    http_peer.reply("/down", status=503)
    definition = {
        "workflow_id": "down",
        "nodes": [
            {
                "id": "call",
                "type": "http_request",
                "params": {"url": f"{http_peer.url}/down"},
                "retry": {"max_attempts": 2, "backoff_s": 0.1, "jitter": False},
            }
        ],
    }
    run = finished_run(stack, launch(stack, definition, {}))

    assert run["status"] == "failed"
    assert run["by_node"]["call"]["attempt"] == 2
    assert "503" in run["error"] and "'call'" in run["error"]


def test_node_over_its_timeout_fails_the_run_with_a_clear_error(
    stack: Stack, http_peer: HttpPeer
) -> None:
    http_peer.reply("/too-slow", json={}, delay_s=5)
    definition = {
        "workflow_id": "too-slow",
        "nodes": [
            {
                "id": "slow",
                "type": "http_request",
                "params": {"url": f"{http_peer.url}/too-slow"},
                "timeout_s": 1,
                "next": "after",
            },
            {"id": "after", "type": "transform", "params": {"values": {"x": 1}}},
        ],
    }
    run = finished_run(stack, launch(stack, definition, {}))

    assert run["status"] == "failed"
    assert run["error"] == "node 'slow' failed: timed out after 1s"
    assert run["by_node"]["slow"]["status"] == "failed"
    assert run["by_node"]["after"]["status"] == "not_started"  # never reached


def test_a_run_keeps_the_version_it_started_with(stack: Stack, http_peer: HttpPeer) -> None:
    first = {
        "workflow_id": "versioned",
        "nodes": [{"id": "t", "type": "transform", "params": {"values": {"v": 1}}}],
    }
    second = {
        "workflow_id": "versioned",
        "nodes": [{"id": "t", "type": "transform", "params": {"values": {"v": 2}}}],
    }
    run_one = finished_run(stack, launch(stack, first, {}))
    run_two = finished_run(stack, launch(stack, second, {}))

    assert (run_one["workflow_version"], run_one["by_node"]["t"]["output"]) == (1, {"v": 1})
    assert (run_two["workflow_version"], run_two["by_node"]["t"]["output"]) == (2, {"v": 2})


def test_a_duplicate_node_message_runs_nothing_twice(stack: Stack, http_peer: HttpPeer) -> None:
    from app.workflows import NodeRef

    definition = {
        "workflow_id": "dup",
        "nodes": [{"id": "hook", "type": "webhook", "params": {"url": f"{http_peer.url}/dup"}}],
    }
    run_id = launch(stack, definition, {})
    publish([NodeRef(run_id, "hook"), NodeRef(run_id, "hook")])  # the same message, twice more

    run = finished_run(stack, run_id)

    assert run["status"] == "succeeded"
    assert run["by_node"]["hook"]["attempt"] == 1
    assert len(http_peer.requests_to("/dup")) == 1
    assert uuid.UUID(run_id)
