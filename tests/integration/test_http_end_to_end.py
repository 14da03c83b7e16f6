"""Through the front door: gunicorn, a real worker, PostgreSQL and Redis, over HTTP."""

from __future__ import annotations

import json
import time

import httpx

from app.demo import new_webhook_secret, signed_headers
from tests.http_peer import HttpPeer
from tests.integration.conftest import ADMIN_KEY, Stack

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def test_signed_trigger_runs_to_success_and_a_repeat_returns_the_same_run(
    stack: Stack, web_url: str, http_peer: HttpPeer
) -> None:
    secret = new_webhook_secret()
    http_peer.reply("/e2e/lead", json={"score": 88})
    definition = {
        "workflow_id": "e2e-http",
        "trigger": {"type": "webhook", "scheme": "standard", "secrets": [secret]},
        "nodes": [
            {
                "id": "fetch",
                "type": "data_fetch",
                "params": {"url": f"{http_peer.url}/e2e/lead"},
                "next": "check",
            },
            {
                "id": "check",
                "type": "conditional",
                "params": {"condition": "nodes.fetch.json.score >= 80"},
                "then": "notify",
            },
            {
                "id": "notify",
                "type": "webhook",
                "params": {
                    "url": f"{http_peer.url}/e2e/notify",
                    "payload": {"lead": "{{ trigger.lead }}"},
                },
            },
        ],
    }
    with httpx.Client(base_url=web_url, timeout=10) as client:
        assert client.post("/api/workflows", json=definition, headers=ADMIN).status_code == 201
        body = json.dumps({"lead": "L-1"})
        headers = signed_headers(secret, body)
        first = client.post("/api/triggers/webhook/e2e-http", content=body, headers=headers)
        again = client.post("/api/triggers/webhook/e2e-http", content=body, headers=headers)

        assert first.status_code == 202, first.text
        assert again.status_code == 200, again.text
        assert again.headers["Idempotent-Replayed"] == "true"
        run_id = first.json()["run_id"]
        assert again.json()["run_id"] == run_id

        status_url = first.json()["status_url"]
        deadline = time.monotonic() + 30
        run = client.get(status_url, headers=ADMIN).json()
        while run["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.1)
            run = client.get(status_url, headers=ADMIN).json()
        seed = client.get("/api/workflow/status", params={"run_id": run_id}, headers=ADMIN).json()

    assert run["status"] == "succeeded", run
    assert [node["status"] for node in run["nodes"]] == ["succeeded"] * 3
    assert seed["run_id"] == run_id and seed["status"] == "succeeded"
    assert [request.json for request in http_peer.requests_to("/e2e/notify")] == [{"lead": "L-1"}]
