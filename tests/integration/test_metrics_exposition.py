"""What ops see of the private stack: GET /metrics through gunicorn (two processes) and a
worker's metrics port (prefork children) add up every process's counts, by route template and
by workflow (capped), without `_created` twins; a token guards the web's; logs are JSON lines."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.workflows import save_workflow, start_run
from tests.http_peer import HttpPeer
from tests.integration.conftest import ADMIN_KEY, Stack, execute, finished_run, gunicorn

RUNS = 6
SCRAPE_TOKEN = "integration-scrape-token"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(url: str, headers: dict[str, str] | None = None) -> Samples:
    response = httpx.get(url, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert "_created" not in response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _succeeded(samples: Samples) -> float:
    """Runs that succeeded, summed over the workflow label."""
    return sum(
        value
        for (name, labels), value in samples.items()
        if name == "dualmcp_runs_finished_total" and ("status", "succeeded") in labels
    )


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
    answered = (
        "dualmcp_http_request_duration_seconds_count",
        (("method", "POST"), ("route", "/api/workflow/execute"), ("status", "202")),
    )
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
        assert web[answered] - web_before.get(answered, 0) == RUNS
    worker = _samples(_worker_metrics_url(private_stack))
    # By workflow: "metered", or "other" in a child that already named 50 (a long session).
    assert _succeeded(worker) - _succeeded(worker_before) >= RUNS
    assert worker[durations] - worker_before.get(durations, 0) >= RUNS
    assert worker[("dualmcp_sweeps_total", ())] > 0
    assert ("dualmcp_queue_depth", ()) in web


@pytest.fixture(scope="module")
def guarded_web_url(private_stack: Stack) -> Iterator[str]:
    """gunicorn (two processes) with a scrape token and room for one workflow per process."""
    extra = {
        "PROMETHEUS_MULTIPROC_DIR": str(private_stack.logs / "guarded-web-metrics"),
        "DUALMCP_METRICS_TOKEN": SCRAPE_TOKEN,
        "DUALMCP_METRICS_MAX_WORKFLOWS": "1",
    }
    with gunicorn(private_stack, extra) as url:
        yield url


def test_the_web_metrics_refuse_a_scrape_without_the_token(guarded_web_url: str) -> None:
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        response = httpx.get(f"{guarded_web_url}/metrics", headers=headers, timeout=10)
        assert response.status_code == 401
        assert "dualmcp_" not in response.text


def test_workflows_past_the_cap_are_counted_as_other(
    private_stack: Stack, guarded_web_url: str
) -> None:
    """Five workflows' runs cancelled through two processes that may each name one."""
    workflows = [f"capped-{n}" for n in range(5)]
    with private_stack.sessions.begin() as session:
        for workflow_id in workflows:
            node = {"id": "only", "type": "transform", "params": {"values": {"n": 1}}}
            save_workflow(session, {"workflow_id": workflow_id, "nodes": [node]})
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for workflow_id in workflows:  # queued, never published: cancelled before a sweep sends it
        with private_stack.sessions.begin() as session:
            run_id = start_run(session, workflow_id, {}).run_id
        cancel = httpx.post(f"{guarded_web_url}/api/runs/{run_id}/cancel", headers=admin)
        assert cancel.status_code == 200, cancel.text

    scraped = _samples(f"{guarded_web_url}/metrics", {"Authorization": f"Bearer {SCRAPE_TOKEN}"})

    cancelled = {
        dict(labels)["workflow"]: value
        for (name, labels), value in scraped.items()
        if name == "dualmcp_runs_finished_total" and dict(labels)["status"] == "cancelled"
    }
    assert sum(cancelled.values()) == len(workflows)
    named = set(cancelled) - {"other"}
    assert 1 <= len(named) <= 2 and named <= set(workflows)
    assert cancelled["other"] == len(workflows) - len(named)


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
