"""`dualmcp standalone --demo`: a sample agent and workflow, fired by a signed trigger, printed.

Everything goes through the public HTTP API, exactly as a user's curl would, so the demo is
also a smoke test of the front end, the worker and the sweeper.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
from standardwebhooks import Webhook

if TYPE_CHECKING:
    from app.standalone import StandaloneConfig

DEMO_WORKFLOW_ID = "demo-lead"
DEMO_AGENT_ID = "sales-assistant"


def demo_workflow(base_url: str, secret: str) -> dict[str, Any]:
    """A lead arrives, the CRM is asked about it, hot and cold leads part ways, then join."""
    return {
        "workflow_id": DEMO_WORKFLOW_ID,
        "agent_id": DEMO_AGENT_ID,
        "name": "Demo: score a new lead",
        "trigger": {"type": "webhook", "scheme": "standard", "secrets": [secret]},
        "nodes": [
            {
                "id": "fetch",
                "type": "data_fetch",
                "params": {"url": base_url + "/api/demo/crm/leads/{{ trigger.lead_id }}"},
                "next": "check",
                "retry": {"max_attempts": 3, "backoff_s": 0.5},
                "timeout_s": 10,
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
                "type": "transform",
                "params": {"values": {"tier": "hot", "note": "Call {{ nodes.fetch.json.name }}"}},
                "next": "summary",
            },
            {
                "id": "cold",
                "type": "transform",
                "params": {"values": {"tier": "cold", "note": "Add to the newsletter"}},
                "next": "summary",
            },
            {
                "id": "summary",
                "type": "transform",
                "params": {
                    "values": {
                        "lead": "{{ nodes.fetch.json.name }}",
                        "score": "{{ nodes.fetch.json.score }}",
                        "tier": "{{ (nodes.hot or nodes.cold).tier }}",
                    }
                },
            },
        ],
    }


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def signed_headers(secret: str, body: str) -> dict[str, str]:
    """Standard Webhooks headers, as a sender such as Svix would send them."""
    message_id = "msg_" + secrets.token_hex(8)
    now = datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
    }


def run_demo(config: StandaloneConfig) -> None:
    """Set up, fire, wait, print. Errors are printed, never raised: the server keeps serving."""
    try:
        with httpx.Client(base_url=config.url, timeout=10) as client:
            _wait_until_up(client)
            run = _fire_and_wait(client, config)
        print_run(run)
        print(_tour(config))
    except Exception as exc:
        print(f"demo failed: {type(exc).__name__}: {exc}")


def _fire_and_wait(client: httpx.Client, config: StandaloneConfig) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {config.admin_key}"}
    agent = {
        "agent_id": DEMO_AGENT_ID,
        "agent_name": "Sales assistant",
        "llm_config": {"provider": "echo"},
        "personality_traits": {"tone": "friendly", "role": "sales assistant"},
    }
    created = client.post("/api/agents", json=agent, headers=admin)
    if created.status_code not in (201, 409):
        created.raise_for_status()
    secret = new_webhook_secret()
    saved = client.put(
        f"/api/workflows/{DEMO_WORKFLOW_ID}",
        json=demo_workflow(config.url, secret),
        headers=admin,
    )
    saved.raise_for_status()
    body = json.dumps({"lead_id": "42", "source": "demo"})
    fired = client.post(
        f"/api/triggers/webhook/{DEMO_WORKFLOW_ID}",
        content=body,
        headers=signed_headers(secret, body),
    )
    fired.raise_for_status()
    run_id = fired.json()["run_id"]
    print(f"fired a signed trigger at {DEMO_WORKFLOW_ID}: run {run_id}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"/api/runs/{run_id}", headers=admin).json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        time.sleep(0.2)
    raise TimeoutError(f"run {run_id} did not finish in 30 s")


def print_run(run: dict[str, Any]) -> None:
    print(f"run {run['run_id']}: {run['status']}" + (f" ({run['error']})" if run["error"] else ""))
    print(f"  {'node':<10} {'type':<12} {'status':<10} {'ms':>8}  output")
    for node in run["nodes"]:
        output = json.dumps(node["output"]) if node["output"] is not None else ""
        if len(output) > 60:
            output = output[:57] + "..."
        duration = f"{node['duration_ms']:.1f}" if node["duration_ms"] is not None else "-"
        name, kind, status = node["node_id"], node["type"], node["status"]
        print(f"  {name:<10} {kind:<12} {status:<10} {duration:>8}  {output}")


def _wait_until_up(client: httpx.Client) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError("the server did not come up")


def _tour(config: StandaloneConfig) -> str:
    return (
        "\nTry it (README.md has the tour):\n"
        f"  curl -H 'Authorization: Bearer {config.admin_key}' {config.url}/api/runs\n"
        f"  curl {config.url}/api/openapi.json\n"
        "Serving; Ctrl-C stops."
    )
