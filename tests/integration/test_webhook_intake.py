"""Webhook intake through the front door (issue 13, section 4): gunicorn, a real worker,
PostgreSQL and Redis. A Slack-signed form and a token-authenticated post each start a run that
succeeds with the body as its `trigger`; the token never reaches a log."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from standardwebhooks import Webhook
from twilio.request_validator import RequestValidator

from tests.integration.conftest import ADMIN_KEY, Stack, finished_run

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
SLACK_SECRET = "slack-signing-secret-for-the-stack"
FORM = "application/x-www-form-urlencoded"


def echo(trigger: dict[str, Any]) -> dict[str, Any]:
    """A transform whose output is the run's whole `trigger`, then one that reads a field of it."""
    return {
        "workflow_id": f"intake-{uuid.uuid4().hex[:8]}",
        "trigger": trigger,
        "nodes": [
            {
                "id": "echo",
                "type": "transform",
                "params": {"values": {"got": "{{ trigger }}"}},
                "next": "pick",
            },
            {
                "id": "pick",
                "type": "transform",
                "params": {"values": {"text": "{{ nodes.echo.got.text }}"}},
            },
        ],
    }


def gunicorn_log(stack: Stack, web_url: str) -> str:
    port = urlsplit(web_url).port
    return (stack.logs / f"gunicorn-{port}.log").read_text(errors="replace")


def test_a_slack_signed_form_starts_a_run_that_succeeds(stack: Stack, web_url: str) -> None:
    definition = echo({"type": "webhook", "scheme": "slack", "secrets": [SLACK_SECRET]})
    workflow_id = definition["workflow_id"]
    body = b"command=%2Flead&text=score+42&user_id=U1&channel_id=C1&channel_id=C2"
    stamp = str(int(time.time()))
    digest = hmac.new(SLACK_SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
    headers = {
        "Content-Type": FORM,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest.hexdigest()}",
    }
    with httpx.Client(base_url=web_url, timeout=10) as client:
        assert client.post("/api/workflows", json=definition, headers=ADMIN).status_code == 201
        forged = client.post(
            f"/api/triggers/webhook/{workflow_id}",
            content=body,
            headers={**headers, "X-Slack-Signature": "v0=" + "0" * 64},
        )
        accepted = client.post(
            f"/api/triggers/webhook/{workflow_id}", content=body, headers=headers
        )

    assert forged.status_code == 401
    assert accepted.status_code == 202, accepted.text
    run = finished_run(stack, accepted.json()["run_id"])
    assert run["status"] == "succeeded", run
    assert run["by_node"]["echo"]["output"]["got"] == {
        "command": "/lead",
        "text": "score 42",
        "user_id": "U1",
        "channel_id": ["C1", "C2"],
    }
    assert run["by_node"]["pick"]["output"] == {"text": "score 42"}


def test_a_token_post_starts_a_run_that_succeeds_and_the_token_is_never_logged(
    stack: Stack, web_url: str
) -> None:
    definition = echo({"type": "webhook", "scheme": "token"})
    workflow_id = definition["workflow_id"]
    path = f"/api/triggers/webhook/{workflow_id}"
    with httpx.Client(base_url=web_url, timeout=10) as client:
        created = client.post("/api/workflows", json=definition, headers=ADMIN)
        assert created.status_code == 201, created.text
        token = created.json()["trigger_token"]
        by_query = client.post(
            path,
            params={"token": token},
            content=b"AWS SNS says hi",
            headers={"Content-Type": "text/plain"},
        )
        by_header = client.post(
            path, json={"text": "bearer"}, headers={"Authorization": f"Bearer {token}"}
        )
        rotated = client.post(f"/api/workflows/{workflow_id}/trigger-token", headers=ADMIN)
        new_token = rotated.json()["trigger_token"]
        old_refused = client.post(path, params={"token": token}, json={"text": "late"})
        missing = client.post(path, json={"text": "anonymous"})

    assert (by_query.status_code, by_header.status_code) == (202, 202), by_query.text
    assert (rotated.status_code, old_refused.status_code, missing.status_code) == (200, 401, 401)
    first = finished_run(stack, by_query.json()["run_id"])
    second = finished_run(stack, by_header.json()["run_id"])
    assert first["status"] == second["status"] == "succeeded"
    assert first["by_node"]["pick"]["output"] == {"text": "AWS SNS says hi"}
    assert second["by_node"]["pick"]["output"] == {"text": "bearer"}
    # The access log holds every request line, `?token=` included: masked.
    log = gunicorn_log(stack, web_url)
    assert f"/api/triggers/webhook/{workflow_id}?token=" in log
    assert token not in log and new_token not in log


def test_a_signed_json_array_starts_a_run_with_the_array_as_its_trigger(
    stack: Stack, web_url: str
) -> None:
    """SendGrid posts its events as one JSON array."""
    secret = "whsec_" + base64.b64encode(b"sendgrid-like-secret").decode()
    definition = echo({"type": "webhook", "scheme": "standard", "secrets": [secret]})
    definition["nodes"][1]["params"] = {"values": {"first": "{{ nodes.echo.got[0].event }}"}}
    body = json.dumps([{"event": "delivered", "sg_message_id": "m1"}, {"event": "open"}])
    with httpx.Client(base_url=web_url, timeout=10) as client:
        assert client.post("/api/workflows", json=definition, headers=ADMIN).status_code == 201
        accepted = client.post(
            f"/api/triggers/webhook/{definition['workflow_id']}",
            content=body,
            headers={**standard_headers(secret, body), "Content-Type": "application/json"},
        )

    assert accepted.status_code == 202, accepted.text
    run = finished_run(stack, accepted.json()["run_id"])
    assert run["status"] == "succeeded", run
    assert run["input"] == json.loads(body)
    assert run["by_node"]["pick"]["output"] == {"first": "delivered"}


def test_a_twilio_signed_form_starts_a_run_that_succeeds(stack: Stack, web_url: str) -> None:
    """Twilio signs the public URL and the sorted form fields (its SDK's validator as oracle)."""
    auth_token = "twilio-auth-token-for-the-stack"
    definition = echo({"type": "webhook", "scheme": "twilio", "secrets": [auth_token]})
    definition["nodes"][1]["params"] = {"values": {"text": "{{ nodes.echo.got.Body }}"}}
    url = f"{web_url}/api/triggers/webhook/{definition['workflow_id']}"
    form = {"From": "+14155550100", "To": "+14155550199", "Body": "call me", "MessageSid": "SM1"}
    signature = RequestValidator(auth_token).compute_signature(url, form)
    with httpx.Client(timeout=10) as client:
        saved = client.post(f"{web_url}/api/workflows", json=definition, headers=ADMIN)
        assert saved.status_code == 201, saved.text
        forged = client.post(url, data=form, headers={"X-Twilio-Signature": "AAAA"})
        accepted = client.post(url, data=form, headers={"X-Twilio-Signature": signature})

    assert forged.status_code == 401
    assert accepted.status_code == 202, accepted.text
    run = finished_run(stack, accepted.json()["run_id"])
    assert run["status"] == "succeeded", run
    assert run["by_node"]["pick"]["output"] == {"text": "call me"}


def standard_headers(secret: str, body: str) -> dict[str, str]:
    message_id = "msg_" + uuid.uuid4().hex
    now = datetime.now(UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
    }
