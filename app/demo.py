"""`dualmcp standalone --demo`: the seed's sales-lead automation, fired, and its run printed.

Everything goes through the public HTTP API, exactly as a user's curl would (the agent, the
workflow, its credentials, the trigger, the run, the outbox), so the demo is also a smoke test
of the front end, the worker and the sweeper. Nothing leaves the machine: the CRM and the sales
team's webhook are this process's demo endpoints, the LLM nodes answer with the offline echo
provider and the email and the SMS go to the outbox (app/standalone.py sees to that).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook

from app.examples import SALES_LEAD, SALES_LEAD_AGENT_ID, load_example

DEMO_WORKFLOW_ID = "sales-lead"
DEMO_AGENT_ID = SALES_LEAD_AGENT_ID
#: Lead 42 of the demo CRM is hot (score 91): every node runs, the SMS included.
DEMO_LEAD_ID = "42"
OUTPUT_WIDTH = 72


@dataclass(frozen=True)
class DemoServer:
    """The server the demo drives over HTTP, and the admin key it drives it with."""

    url: str
    admin_key: str


#: The sales-lead workflow as a tool: the demo agent calls it, and so may any MCP client.
DEMO_TOOL = {
    "name": "process_lead",
    "description": "Fetch a lead from the CRM, score it, email it, text it when hot, and tell "
    "the sales team. Answers with what each last step did.",
    "input_schema": {
        "type": "object",
        "properties": {
            "lead_id": {"type": "string", "description": "the lead's id in the CRM"},
            "source": {"type": "string", "description": "where the lead came from"},
        },
        "required": ["lead_id"],
    },
}


def demo_workflow(base_url: str, secret: str) -> dict[str, Any]:
    """The seed's sales-lead automation (app/examples/sales_lead.json) wired to this process:
    its CRM and the sales team's webhook are the demo endpoints (app/web/demo.py). It is also
    a tool (`process_lead`) for agents and MCP clients."""
    workflow = load_example(
        SALES_LEAD,
        crm_url=base_url + "/api/demo/crm",
        notify_url=base_url + "/api/demo/sales-team",
        trigger_secret=secret,
    )
    return {**workflow, "tool": DEMO_TOOL}


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


def run_demo(config: DemoServer) -> None:
    """Set up, fire, wait, print. Errors are printed, never raised: the server keeps serving."""
    try:
        with httpx.Client(base_url=config.url, timeout=30) as client:
            _wait_until_up(client)
            run = _fire_and_wait(client, config)
            print_run(run)
            print_outbox(client, config, run["run_id"])
            _converse(client, config)
            _agent_calls_the_workflow(client, config)
        print(_tour(config))
    except Exception as exc:
        print(f"demo failed: {type(exc).__name__}: {exc}")


def _fire_and_wait(client: httpx.Client, config: DemoServer) -> dict[str, Any]:
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
    # The sample names its secrets; they are stored encrypted and never shown again.
    for name, value in (
        ("crm-token", "demo-crm-" + secrets.token_hex(8)),
        ("sales-webhook", new_webhook_secret()),
    ):
        stored = client.put(
            f"/api/workflows/{DEMO_WORKFLOW_ID}/credentials/{name}",
            json={"value": value},
            headers=admin,
        )
        stored.raise_for_status()
    body = json.dumps({"lead_id": DEMO_LEAD_ID, "source": "demo"})
    fired = client.post(
        f"/api/triggers/webhook/{DEMO_WORKFLOW_ID}",
        content=body,
        headers=signed_headers(secret, body),
    )
    fired.raise_for_status()
    run_id = fired.json()["run_id"]
    print(
        f"fired a signed new-lead webhook at {DEMO_WORKFLOW_ID} (lead {DEMO_LEAD_ID}): run {run_id}"
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"/api/runs/{run_id}", headers=admin).json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        time.sleep(0.2)
    raise TimeoutError(f"run {run_id} did not finish in 30 s")


def _converse(client: httpx.Client, config: DemoServer) -> None:
    """One message to the demo agent over POST /api/mcp/process, as a chat client would."""
    admin = {"Authorization": f"Bearer {config.admin_key}"}
    message = {"agent_id": DEMO_AGENT_ID, "session_id": "demo", "message": "Who are you?"}
    answer = client.post("/api/mcp/process", json=message, headers=admin)
    answer.raise_for_status()
    reply = answer.json()
    print(f"agent {DEMO_AGENT_ID} (session demo, {reply['memory_size']} messages stored):")
    print(f"  {reply['reply']}")


def _agent_calls_the_workflow(client: httpx.Client, config: DemoServer) -> None:
    """The agent gets the sales-lead workflow as a tool and calls it (the echo provider's
    `/call` syntax stands in for a model's tool call), then answers with its result."""
    admin = {"Authorization": f"Bearer {config.admin_key}"}
    tools = {"tools": [{"type": "workflow", "workflow_id": DEMO_WORKFLOW_ID}]}
    changed = client.patch(
        f"/api/agents/{DEMO_AGENT_ID}", json={**tools, "expose_as_tool": True}, headers=admin
    )
    changed.raise_for_status()
    call = json.dumps({"lead_id": "7", "source": "agent"})
    message = {
        "agent_id": DEMO_AGENT_ID,
        "session_id": "demo-tools",
        "message": f"/call {DEMO_TOOL['name']} {call}",
    }
    answer = client.post("/api/mcp/process", json=message, headers=admin, timeout=60)
    answer.raise_for_status()
    reply = answer.json()
    print(f"agent {DEMO_AGENT_ID} called the workflow as a tool:")
    for made in reply.get("tool_calls", []):
        outcome = "ok" if made["ok"] else "failed"
        print(f"  {made['name']}({json.dumps(made['arguments'])}): {outcome} in {made['ms']} ms")
    text = " ".join(reply["reply"].split())
    print(f"  {text if len(text) <= OUTPUT_WIDTH else text[: OUTPUT_WIDTH - 3] + '...'}")


def print_run(run: dict[str, Any]) -> None:
    print(f"run {run['run_id']}: {run['status']}" + (f" ({run['error']})" if run["error"] else ""))
    print(f"  {'node':<12} {'type':<22} {'status':<10} {'ms':>8}  output")
    for node in run["nodes"]:
        duration = f"{node['duration_ms']:.1f}" if node["duration_ms"] is not None else "-"
        name, kind, status = node["node_id"], node["type"], node["status"]
        print(f"  {name:<12} {kind:<22} {status:<10} {duration:>8}  {short_output(node)}")


def short_output(node: dict[str, Any]) -> str:
    """One line saying what the node did: the backend and id of a message, the text of an LLM
    node, the branch of a conditional, the status of an HTTP call."""
    output = node["output"]
    if node["error"]:
        text = f"error: {node['error']}"
    elif not isinstance(output, dict):
        text = "" if output is None else json.dumps(output)
    elif "backend" in output:  # email, SMS, webhook
        to, status = output.get("to"), output.get("status")
        parts = [output["backend"]]
        if to:
            parts.append("to " + (", ".join(to) if isinstance(to, list) else str(to)))
        if isinstance(status, int):
            parts.append(f"HTTP {status}")
        text = " ".join([*parts, f"id {output['id']}"])
    elif "json" in output and "headers" in output:  # http_request, data_fetch
        text = f"HTTP {output['status']} {json.dumps(output['json'])}"
    elif "text" in output:  # LLM nodes
        text = f"{output.get('provider')}: {output['text']}"
    elif "branch" in output:  # conditional
        text = f"{output['branch']} ({output['result']})"
    else:
        text = json.dumps(output)
    text = " ".join(text.split())
    return text if len(text) <= OUTPUT_WIDTH else text[: OUTPUT_WIDTH - 3] + "..."


def print_outbox(client: httpx.Client, config: DemoServer, run_id: str) -> None:
    """What the email and SMS nodes stored instead of sending (GET /api/outbox)."""
    admin = {"Authorization": f"Bearer {config.admin_key}"}
    answer = client.get("/api/outbox", params={"run_id": run_id}, headers=admin)
    answer.raise_for_status()
    messages = answer.json()["messages"][::-1]  # oldest first, in the order they were "sent"
    print(f"outbox of run {run_id} ({len(messages)} messages; nothing left this machine):")
    for item in messages:
        message = item["message"]
        to = ", ".join(message["to"]) if isinstance(message["to"], list) else message["to"]
        about = message.get("subject") or message.get("body", "")
        line = f"  {item['channel']:<6} to {to}: {about}"
        print(line if len(line) <= OUTPUT_WIDTH + 20 else line[: OUTPUT_WIDTH + 17] + "...")


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


def _tour(config: DemoServer) -> str:
    return (
        "\nTry it (README.md has the tour):\n"
        f"  curl -H 'Authorization: Bearer {config.admin_key}' {config.url}/api/runs\n"
        f"  curl -H 'Authorization: Bearer {config.admin_key}' {config.url}/api/outbox\n"
        f"  curl -H 'Authorization: Bearer {config.admin_key}' "
        f"'{config.url}/api/agents/{DEMO_AGENT_ID}/memory?session_id=demo'\n"
        f"  curl {config.url}/api/openapi.json\n"
        "Use its workflows and agents as tools from an MCP client (docs/api.md: The MCP "
        "endpoint):\n"
        f"  claude mcp add --transport http dualmcp {config.url}/mcp "
        f"--header 'Authorization: Bearer {config.admin_key}'\n"
        f"  npx @modelcontextprotocol/inspector --cli {config.url}/mcp --transport http "
        f"--header 'Authorization: Bearer {config.admin_key}' --method tools/list\n"
        "Serving; Ctrl-C stops."
    )
