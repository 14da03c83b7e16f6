"""The seed's sales-lead automation (app/examples/sales_lead.json), end to end, on the real stack.

gunicorn, a Celery worker and beat, PostgreSQL and Redis, against real local peers: a CRM that
wants the workflow's Bearer credential, OpenAI- and Anthropic-compatible LLM servers, aiosmtpd,
a server speaking Twilio's Messages API (basic auth, form fields) and a webhook receiver that
verifies the Standard Webhooks signature.

This stack is the module's own: its database and Redis database are not the session's, and its
worker has SMTP_URL, TWILIO_*, OPENAI_* and ANTHROPIC_* pointing at the peers, so no other test
sees those settings, and killing its worker disturbs no other test.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy
from sqlalchemy import select

from app.credentials.crypto import new_key
from app.demo import new_webhook_secret, signed_headers
from app.drivers.base import idempotency_key
from app.examples import SALES_LEAD, load_example
from app.models import SentEffect, make_engine, make_session_factory
from tests.http_peer import HttpPeer, RecordedRequest, Reply
from tests.integration.conftest import ADMIN_KEY, STACK_ENV, Stack, gunicorn, own_database
from tests.llm_peers import ANTHROPIC_PATH, OPENAI_PATH, serve_anthropic, serve_openai
from tests.messaging_peers import SmtpPeer, TwilioPeer, WebhookReceiver

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
WORKFLOW_ID = "sales-lead"
CRM_TOKEN = "crm-token-" + uuid.uuid4().hex
TWILIO_SID, TWILIO_TOKEN, COMPANY_NUMBER = "AC" + "7" * 32, "twilio-token-e2e", "+15005550006"
SENDER = "Example Corp Sales <sales@example.com>"
HOT_SCORE, COLD_SCORE = 91, 35


class CrmPeer(HttpPeer):
    """GET /crm/leads/<id> with `Authorization: Bearer CRM_TOKEN`; leads whose id ends in 0 are
    cold, the others hot. Every lead has its own email address and phone number."""

    def _answer(self, request: RecordedRequest) -> tuple[Reply, int]:
        super()._answer(request)
        if request.headers.get("authorization") != f"Bearer {CRM_TOKEN}":
            return Reply(status=401, json={"error": "unauthorized"}), 401
        lead_id = request.route.rsplit("/", 1)[-1]
        if not lead_id.isdigit():
            return Reply(status=404, json={"error": "no such lead"}), 404
        return Reply(json=crm_lead(lead_id)), 200


def crm_lead(lead_id: str) -> dict[str, Any]:
    return {
        "id": lead_id,
        "name": f"Lead {lead_id}",
        "email": f"lead{lead_id}@example.com",
        "phone": f"+1415555{int(lead_id):04d}",
        "company": "Acme",
        "interest": "workflow automation",
        "score": COLD_SCORE if lead_id.endswith("0") else HOT_SCORE,
    }


@dataclass
class SalesStack:
    stack: Stack
    url: str
    database_url: str
    trigger_secret: str
    crm: CrmPeer
    llm: HttpPeer
    smtp: SmtpPeer
    twilio: TwilioPeer
    receiver: WebhookReceiver

    def fire(self, lead_id: str, webhook_id: str | None = None) -> httpx.Response:
        """A signed new-lead webhook, as a lead form would send it."""
        body = json.dumps({"lead_id": lead_id, "source": "landing-page"})
        headers = signed_headers(self.trigger_secret, body)
        if webhook_id is not None:  # re-sign under a chosen id (a repeated delivery)
            headers = _signed_with_id(self.trigger_secret, body, webhook_id)
        return httpx.post(
            f"{self.url}/api/triggers/webhook/{WORKFLOW_ID}",
            content=body,
            headers=headers,
            timeout=10,
        )

    def finished(self, run_id: str, timeout: float = 45) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            run: dict[str, Any] = httpx.get(
                f"{self.url}/api/runs/{run_id}", headers=ADMIN, timeout=10
            ).json()
            return run if run["status"] in ("succeeded", "failed", "cancelled") else None

        run: dict[str, Any] = self.stack.wait_for(check, timeout, what=f"run {run_id}")
        run["by_node"] = {node["node_id"]: node for node in run["nodes"]}
        return run

    def emails_of(self, run_id: str) -> list[Any]:
        message_id = f"<{idempotency_key(run_id, 'email')}@example.com>"
        return [m for m in self.smtp.messages if m["Message-ID"] == message_id]

    def sms_to(self, lead_id: str) -> list[dict[str, str]]:
        return [form for form in self.twilio.sent if form["To"] == crm_lead(lead_id)["phone"]]

    def notifications_of(self, run_id: str) -> list[Any]:
        return [d for d in self.receiver.deliveries if d.payload["run_id"] == run_id]


def _signed_with_id(secret: str, body: str, webhook_id: str) -> dict[str, str]:
    from datetime import UTC, datetime

    from standardwebhooks import Webhook

    now = datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, now, body),
    }


@pytest.fixture(scope="module")
def sales_database(postgres_url: str) -> Iterator[str]:
    """A database of this module alone on the session's PostgreSQL, migrated."""
    with own_database(postgres_url, "dualmcp_sales") as url:
        yield url


@pytest.fixture(scope="module")
def sales_redis(redis_url: str) -> Iterator[str]:
    """An empty Redis database of the session's server (the broker of this module's worker)."""
    base = redis.Redis.from_url(redis_url)
    candidates = random.sample(range(8, 16), 8)
    number = next((n for n in candidates if not _dbsize(base, n)), None)
    base.close()
    assert number is not None, "no empty Redis database among 8-15"
    url = redis_url.rsplit("/", 1)[0] + f"/{number}"
    yield url
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


def _dbsize(base: redis.Redis, number: int) -> int:
    kwargs = base.connection_pool.connection_kwargs
    client = redis.Redis(host=kwargs["host"], port=kwargs["port"], db=number)
    try:
        return int(client.dbsize())
    finally:
        client.close()


@pytest.fixture(scope="module")
def sales(
    sales_database: str, sales_redis: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SalesStack]:
    with (
        CrmPeer() as crm,
        HttpPeer() as llm,
        SmtpPeer(username="mailer", password="smtp-pass-e2e") as smtp,
        TwilioPeer(TWILIO_SID, TWILIO_TOKEN) as twilio,
        WebhookReceiver(new_webhook_secret()) as receiver,
    ):
        serve_openai(llm)
        serve_anthropic(llm)
        env = {
            **os.environ,
            **STACK_ENV,
            "DATABASE_URL": sales_database,
            "REDIS_URL": sales_redis,
            "DUALMCP_NODE_TIMEOUT_S": "5",  # a lost email node's lease expires within the test
            "DUALMCP_ENCRYPTION_KEY": new_key(),
            "SMTP_URL": smtp.url,
            "SMTP_FROM": SENDER,
            "TWILIO_ACCOUNT_SID": TWILIO_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "TWILIO_FROM_NUMBER": COMPANY_NUMBER,
            "TWILIO_API_BASE": twilio.url,
            "OPENAI_BASE_URL": f"{llm.url}/v1",
            "OPENAI_API_KEY": "sk-e2e",
            "ANTHROPIC_BASE_URL": llm.url,
            "ANTHROPIC_API_KEY": "sk-ant-e2e",
        }
        engine = make_engine(sales_database)
        logs = tmp_path_factory.mktemp("sales-stack")
        stack = Stack(env, make_session_factory(engine), logs)
        try:
            stack.start_worker()
            stack.start_beat(logs / "beat-schedule")
            with gunicorn(stack) as url:
                secret = new_webhook_secret()
                _install(url, crm, receiver, secret)
                yield SalesStack(
                    stack, url, sales_database, secret, crm, llm, smtp, twilio, receiver
                )
        finally:
            stack.stop()
            engine.dispose()


def _install(url: str, crm: CrmPeer, receiver: WebhookReceiver, secret: str) -> None:
    """What an operator does, over the API: the agent, the sample, its two credentials."""
    agent = {
        "agent_id": "sales-assistant",
        "agent_name": "Sales assistant",
        "llm_config": {"provider": "anthropic", "model": "claude-test"},
        "personality_traits": {"role": "sales assistant", "tone": "concise"},
    }
    definition = load_example(
        SALES_LEAD,
        crm_url=f"{crm.url}/crm",
        notify_url=f"{receiver.url}/sales",
        trigger_secret=secret,
    )
    with httpx.Client(base_url=url, headers=ADMIN, timeout=10) as client:
        assert client.post("/api/agents", json=agent).status_code == 201
        saved = client.put(f"/api/workflows/{WORKFLOW_ID}", json=definition)
        assert saved.status_code == 201, saved.text
        for name, value in (("crm-token", CRM_TOKEN), ("sales-webhook", receiver.secret)):
            stored = client.put(
                f"/api/workflows/{WORKFLOW_ID}/credentials/{name}", json={"value": value}
            )
            assert stored.status_code == 201, stored.text


def test_a_hot_lead_runs_every_node_and_each_side_effect_happens_once(sales: SalesStack) -> None:
    fired = sales.fire("42")
    assert fired.status_code == 202, fired.text
    run_id = fired.json()["run_id"]
    run = sales.finished(run_id)

    assert run["status"] == "succeeded", run
    assert [n["status"] for n in run["nodes"]] == ["succeeded"] * 7
    out = {node_id: node["output"] for node_id, node in run["by_node"].items()}

    # The CRM was asked once, with the credential; the secret is in no output.
    crm_requests = sales.crm.requests_to("/crm/leads/42")
    assert [r.headers["authorization"] for r in crm_requests] == [f"Bearer {CRM_TOKEN}"]
    assert CRM_TOKEN not in json.dumps(run)
    # The agent (Anthropic) analysed the lead; the OpenAI node wrote the email from it.
    analysis_prompt = _last_user_text(_request_for(sales.llm, ANTHROPIC_PATH, "Lead 42 of Acme"))
    assert "lead score 91/100" in analysis_prompt
    assert out["analyze"]["provider"] == "anthropic"
    assert out["analyze"]["text"] == f"peer reply to: {analysis_prompt}"
    writing = _request_for(sales.llm, OPENAI_PATH, out["analyze"]["text"])
    assert writing["messages"][0]["role"] == "system"  # the agent's personality
    assert out["write_email"]["provider"] == "openai"
    # One email, from SMTP_FROM, with the node's key as its Message-ID.
    [email] = sales.emails_of(run_id)
    assert (email["To"], email["From"]) == ("lead42@example.com", SENDER)
    assert email["Subject"] == "Welcome to Example Corp, Lead 42"
    assert email.get_body(("plain",)).get_content().strip() == out["write_email"]["text"]
    assert out["email"] == {
        "backend": "smtp",
        "id": email["Message-ID"],
        "to": ["lead42@example.com"],
        "cc": [],
        "subject": "Welcome to Example Corp, Lead 42",
        "refused": [],
    }
    # One SMS, with Twilio's sid in the output.
    assert sales.sms_to("42") == [
        {"To": "+14155550042", "From": COMPANY_NUMBER, "Body": _sms_text("Lead 42")}
    ]
    assert out["sms"]["backend"] == "twilio"
    assert out["sms"]["sid"] in sales.twilio.sids
    # One signed notification for the sales team, naming what was sent.
    [note] = sales.notifications_of(run_id)
    assert note.webhook_id == idempotency_key(run_id, "notify")
    assert note.payload["lead"]["score"] == HOT_SCORE
    assert (note.payload["email_id"], note.payload["sms_id"]) == (
        out["email"]["id"],
        out["sms"]["id"],
    )
    # Both messages were recorded before their nodes returned.
    with sales.stack.sessions() as session:
        recorded = dict(
            session.execute(select(SentEffect.idempotency_key, SentEffect.provider_id)).all()
        )
    assert recorded[idempotency_key(run_id, "email")] == out["email"]["id"]
    assert recorded[idempotency_key(run_id, "sms")] == out["sms"]["sid"]


def test_a_cold_lead_gets_the_email_but_no_sms(sales: SalesStack) -> None:
    fired = sales.fire("70")
    run = sales.finished(fired.json()["run_id"])

    assert run["status"] == "succeeded", run
    statuses = {node_id: node["status"] for node_id, node in run["by_node"].items()}
    assert statuses["sms"] == "skipped"
    assert statuses["notify"] == statuses["email"] == "succeeded"
    assert run["by_node"]["check"]["output"] == {"result": False, "branch": "else"}
    assert len(sales.emails_of(run["run_id"])) == 1
    assert sales.sms_to("70") == []
    [note] = sales.notifications_of(run["run_id"])
    assert (note.payload["lead"]["score"], note.payload["sms_id"]) == (COLD_SCORE, None)


def test_a_repeated_delivery_changes_nothing(sales: SalesStack) -> None:
    webhook_id = "msg_" + uuid.uuid4().hex
    first = sales.fire("43", webhook_id)
    run_id = first.json()["run_id"]
    sales.finished(run_id)
    sent = (len(sales.smtp.messages), len(sales.twilio.sent), len(sales.receiver.deliveries))
    runs = _run_count(sales)

    again = sales.fire("43", webhook_id)  # the sender retries: same id, freshly signed
    time.sleep(2)  # long enough for a second run's first nodes, had one started

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["run_id"] == run_id
    assert again.json()["duplicate"] is True
    assert _run_count(sales) == runs
    after = (len(sales.smtp.messages), len(sales.twilio.sent), len(sales.receiver.deliveries))
    assert after == sent
    assert (len(sales.emails_of(run_id)), len(sales.sms_to("43"))) == (1, 1)


def test_a_worker_killed_between_sent_and_committed_does_not_send_twice(
    sales: SalesStack,
) -> None:
    """The email is sent and recorded in sent_effects; the completion that would commit the
    node is held by a row lock in PostgreSQL; the worker is SIGKILLed right there. The node runs
    again on a new worker, finds its key recorded, and sends nothing."""
    sales.smtp.hold()  # the server keeps the worker waiting for its 250 after the data
    run_id = sales.fire("44").json()["run_id"]
    assert sales.smtp.arrived.wait(30), sales.stack.tail_logs()
    key = idempotency_key(run_id, "email")
    locker = sqlalchemy.create_engine(sales.database_url)
    with locker.connect() as lock:
        # Hold the email's node_run row: its completion (one UPDATE of it) must wait.
        held = lock.execute(
            sqlalchemy.text(
                "SELECT status FROM node_runs WHERE run_id = :run AND node_id = 'email' FOR UPDATE"
            ),
            {"run": run_id},
        ).scalar()
        assert held == "running"
        sales.smtp.release()  # 250: sent
        sales.stack.wait_for(lambda: _recorded(sales, key), 30, what="the sent effect")
        sales.stack.wait_for(lambda: _completion_waiting(sales), 30, what="the held completion")
        sales.stack.kill_worker()  # sent and recorded, never committed...
        # ...and its statement with it: an autocommit completion already on the server would
        # otherwise commit once the lock is released (the worker's host is gone, say).
        _terminate_waiting_completions(sales)
        lock.rollback()
    locker.dispose()
    sales.stack.start_worker()
    run = sales.finished(run_id, timeout=60)

    assert run["status"] == "succeeded", run
    email = run["by_node"]["email"]
    assert email["attempt"] == 2  # it did run again...
    assert email["output"]["replayed"] is True  # ...and returned what the first attempt sent
    assert len(sales.emails_of(run_id)) == 1
    assert len(sales.sms_to("44")) == 1
    assert len(sales.notifications_of(run_id)) == 1


def _recorded(sales: SalesStack, key: str) -> bool:
    with sales.stack.sessions() as session:
        return session.get(SentEffect, key) is not None


_WAITING_COMPLETIONS = (
    "FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
    # the fenced finish: alone, or first in the one-statement completion
    "AND (query ILIKE 'UPDATE node_runs%' OR query ILIKE 'WITH fenced AS%')"
)


def _terminate_waiting_completions(sales: SalesStack) -> None:
    with sales.stack.sessions() as session:
        session.execute(sqlalchemy.text(f"SELECT pg_terminate_backend(pid) {_WAITING_COMPLETIONS}"))


def _completion_waiting(sales: SalesStack) -> bool:
    """True when a backend waits on a row lock to update node_runs: the completion. Asked in
    a transaction of its own: PostgreSQL snapshots pg_stat_activity once per transaction."""
    with sales.stack.sessions() as session:
        waiting = session.execute(
            sqlalchemy.text(f"SELECT count(*) {_WAITING_COMPLETIONS}")
        ).scalar()
    return bool(waiting)


def _run_count(sales: SalesStack) -> int:
    page = httpx.get(
        f"{sales.url}/api/runs", params={"workflow_id": WORKFLOW_ID, "limit": 200}, headers=ADMIN
    ).json()
    return len(page["runs"])


def _request_for(peer: HttpPeer, path: str, needle: str) -> dict[str, Any]:
    """The JSON body of the one request to `path` whose last user message mentions `needle`."""
    found = [r.json for r in peer.requests_to(path) if needle in _last_user_text(r.json)]
    assert len(found) == 1, f"{len(found)} requests to {path} mention {needle!r}"
    return found[0]


def _last_user_text(body: dict[str, Any]) -> str:
    content = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    if isinstance(content, list):
        return "".join(block.get("text", "") for block in content)
    return str(content)


def _sms_text(name: str) -> str:
    return (
        f"Hi {name}, thanks for your interest in Example Corp! "
        "A sales engineer will call you today."
    )


def test_no_secret_reaches_a_log_or_a_run(sales: SalesStack) -> None:
    """After a run (and every earlier one of this module): the CRM token, the webhook secret,
    the SMTP password, the Twilio token and the encryption key are in no log of web, worker or
    beat, nor in any run's nodes (outputs and errors)."""
    assert sales.finished(sales.fire("45").json()["run_id"])["status"] == "succeeded"
    secrets = {
        "crm token": CRM_TOKEN,
        "webhook secret": sales.receiver.secret,
        "smtp password": "smtp-pass-e2e",
        "twilio token": TWILIO_TOKEN,
        "encryption key": sales.stack.env["DUALMCP_ENCRYPTION_KEY"],
    }
    logs = {path.name: path.read_text(errors="replace") for path in sales.stack.logs.glob("*.log")}
    assert any(name.startswith("worker") for name in logs)
    page = httpx.get(
        f"{sales.url}/api/runs", params={"workflow_id": WORKFLOW_ID}, headers=ADMIN, timeout=10
    ).json()
    runs = [
        httpx.get(f"{sales.url}/api/runs/{run['run_id']}", headers=ADMIN, timeout=10).text
        for run in page["runs"]
    ]
    assert runs
    for what, secret in secrets.items():
        assert [name for name, text in logs.items() if secret in text] == [], what
        assert not any(secret in run for run in runs), what
