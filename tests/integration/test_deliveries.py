"""The webhook delivery log and the refusal limits through gunicorn (two processes sharing the
counters in the broker's Redis), with the stack's worker running the accepted deliveries."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import redis
from standardwebhooks import Webhook

from app.web.rate_limits import KEY_PREFIX
from tests.integration.conftest import ADMIN_KEY, Stack, finished_run, gunicorn

SECRET = "whsec_" + base64.b64encode(b"integration-log-secret-32-bytes!").decode()
FORGED = "whsec_" + base64.b64encode(b"a-forger-guessing-32-bytes-long!").decode()
PER_ADDRESS = 4
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
BODY = b'{"lead_id": "42"}'


def signed(message_id: str, secret: str = SECRET) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, BODY.decode()),
    }


def test_refused_deliveries_are_logged_and_a_flooding_sender_gets_429(stack: Stack) -> None:
    workflow_id = f"delivery-log-{uuid.uuid4().hex[:8]}"
    # Behind one proxy: the senders are told apart by X-Forwarded-For (TEST-NET addresses).
    env = {
        "DUALMCP_PROXY_HOPS": "1",
        "DUALMCP_WEBHOOK_REFUSALS_PER_ADDRESS": str(PER_ADDRESS),
        "DUALMCP_WEBHOOK_REFUSALS_PER_WORKFLOW": "50",
    }
    broker = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        with gunicorn(stack, env) as url, httpx.Client(base_url=url, timeout=10) as web:

            def deliver(sender: str, headers: dict[str, str]) -> Any:
                return web.post(
                    f"/api/triggers/webhook/{workflow_id}",
                    content=BODY,
                    headers={**headers, "X-Forwarded-For": sender},
                )

            saved = web.post(
                "/api/workflows",
                headers=ADMIN,
                json={
                    "workflow_id": workflow_id,
                    "trigger": {"type": "webhook", "secrets": [SECRET]},
                    "nodes": [{"id": "n", "type": "transform", "params": {"values": {"ok": 1}}}],
                },
            )
            assert saved.status_code == 201, saved.text

            first = deliver("198.51.100.1", signed("msg_first"))
            assert first.status_code == 202, first.text
            forged = [
                deliver("198.51.100.23", signed(f"msg_forged_{n}", FORGED)).status_code
                for n in range(PER_ADDRESS)
            ]
            limited = deliver("198.51.100.23", signed("msg_forged_more", FORGED))
            genuine = deliver("198.51.100.23", signed("msg_genuine"))  # never limited
            other = deliver("198.51.100.24", signed("msg_other"))

            assert forged == [401] * PER_ADDRESS
            assert genuine.status_code == 202, genuine.text
            assert limited.status_code == 429
            assert 1 <= int(limited.headers["Retry-After"]) <= 60
            assert limited.json()["error"]["code"] == "rate_limited"
            assert other.status_code == 202
            assert finished_run(stack, first.json()["run_id"])["status"] == "succeeded"

            log = web.get(f"/api/workflows/{workflow_id}/deliveries", headers=ADMIN).json()
            web_log = (stack.logs / f"gunicorn-{url.rsplit(':', 1)[1]}.log").read_text()

        shown = [
            (d["status"], d["reason"], d["delivery_id"], d["source_address"])
            for d in log["deliveries"]
        ]
        assert shown == [
            (202, None, "msg_other", None),
            (202, None, "msg_genuine", None),
            *[
                (401, "mismatch", f"msg_forged_{n}", "198.51.100.23")
                for n in reversed(range(PER_ADDRESS))
            ],
            (202, None, "msg_first", None),
        ]
        assert log["deliveries"][-1]["run_id"] == first.json()["run_id"]
        assert "Traceback" not in web_log
    finally:
        for key in broker.scan_iter(f"{KEY_PREFIX}:*"):
            broker.delete(key)
        broker.close()
