"""What ops see of the private stack: GET /metrics through gunicorn (two processes) and a
worker's metrics port (prefork children) add up every process's counts; logs are JSON lines."""

from __future__ import annotations

import json

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.workflows import save_workflow
from tests.http_peer import HttpPeer
from tests.integration.conftest import Stack, execute, finished_run

RUNS = 6


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _worker_metrics_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.env['DUALMCP_WORKER_METRICS_PORT']}/metrics"


def test_counts_from_every_process_add_up(private_stack: Stack, private_web_url: str) -> None:
    with private_stack.sessions.begin() as session:
        save_workflow(
            session,
            {
                "workflow_id": "metered",
                "nodes": [{"id": "only", "type": "transform", "params": {"values": {"n": 1}}}],
            },
        )
    accepted = ("dualmcp_triggers_accepted_total", (("source", "api"),))
    succeeded = ("dualmcp_runs_finished_total", (("status", "succeeded"),))
    durations = (
        "dualmcp_node_duration_seconds_count",
        (("outcome", "succeeded"), ("type", "transform")),
    )
    web_before = _samples(f"{private_web_url}/metrics")
    worker_before = _samples(_worker_metrics_url(private_stack))

    run_ids = [execute(private_web_url, "metered").json()["run_id"] for _ in range(RUNS)]
    for run_id in run_ids:
        assert finished_run(private_stack, run_id)["status"] == "succeeded"

    for _ in range(3):  # whichever gunicorn process answers, it shows both processes' counts
        web = _samples(f"{private_web_url}/metrics")
        assert web[accepted] - web_before.get(accepted, 0) == RUNS
    worker = _samples(_worker_metrics_url(private_stack))
    assert worker[succeeded] - worker_before.get(succeeded, 0) >= RUNS
    assert worker[durations] - worker_before.get(durations, 0) >= RUNS
    assert worker[("dualmcp_sweeps_total", ())] > 0
    assert ("dualmcp_queue_depth", ()) in web


def test_worker_logs_are_json_lines_naming_the_run_and_node(
    private_stack: Stack, private_web_url: str, http_peer: HttpPeer
) -> None:
    http_peer.reply("/logs/call", json={"ok": True})
    with private_stack.sessions.begin() as session:
        save_workflow(
            session,
            {
                "workflow_id": "logged",
                "nodes": [
                    {
                        "id": "call",
                        "type": "http_request",
                        "params": {"url": f"{http_peer.url}/logs/call?token=s3cr3t-in-a-url"},
                    }
                ],
            },
        )
    run_id = execute(private_web_url, "logged").json()["run_id"]
    assert finished_run(private_stack, run_id)["status"] == "succeeded"

    events = [
        json.loads(line)
        for path in private_stack.logs.glob("worker-*.log")
        for line in path.read_text().splitlines()
        if line.startswith("{")
    ]
    about_the_run = [event for event in events if event.get("run_id") == run_id]
    assert about_the_run, private_stack.tail_logs()
    assert {(e["node_id"], e["workflow_id"]) for e in about_the_run} == {("call", "logged")}
    assert all({"ts", "level", "logger", "message"} <= set(event) for event in events)
    assert not any("s3cr3t-in-a-url" in json.dumps(event) for event in events)
