"""What real senders post (issue 13, section 4), over the Flask test client: JSON arrays, forms
and text bodies; Slack and Twilio signatures; and the per-workflow trigger token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from app.config import Settings
from app.models import TriggerEvent, Workflow, WorkflowRun
from app.web import create_app
from app.web.context import WebContext
from app.web.webhook_payloads import (
    MAX_FORM_FIELDS,
    MalformedBody,
    form_payload,
    text_payload,
)
from app.workflows import get_run, save_workflow
from app.workflows.trigger_tokens import rotate_trigger_token, sync_trigger_token, token_digest
from tests.web.conftest import ADMIN, READ, RecordingPublisher
from tests.web.factories import drive, unique_id

#: The run and trigger contract: on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_databases

SECRET = "whsec_" + base64.b64encode(b"intake-secret-32-bytes-long!!!!!").decode()
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TWILIO_TOKEN = "twilio-auth-token-for-tests"
FORM = "application/x-www-form-urlencoded"
GENERIC_401 = {"code": "invalid_signature", "message": "signature verification failed"}


def echo(workflow_id: str, trigger: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """One transform whose output is the run's whole `trigger` (a lone `{{ }}` keeps its type)."""
    return {
        "workflow_id": workflow_id,
        "trigger": trigger,
        "nodes": [
            {"id": "echo", "type": "transform", "params": {"values": {"got": "{{ trigger }}"}}}
        ],
        **extra,
    }


def saved(sessions: sessionmaker[Session], trigger: dict[str, Any], **extra: Any) -> str:
    workflow_id = unique_id("intake")
    with sessions.begin() as session:
        save_workflow(session, echo(workflow_id, trigger, **extra))
    return workflow_id


def signed(body: bytes, content_type: str = "application/json") -> dict[str, str]:
    """Standard Webhooks headers (the package signs text: the body must be UTF-8)."""
    now = datetime.now(UTC)
    message_id = unique_id("msg")
    return {
        "Content-Type": content_type,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(message_id, now, body.decode()),
    }


def slack_headers(
    body: bytes, at: float | None = None, secret: str = SLACK_SECRET
) -> dict[str, str]:
    stamp = str(int(time.time() if at is None else at))
    digest = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
    return {
        "Content-Type": FORM,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest.hexdigest()}",
    }


def twilio_headers(
    url: str, fields: list[tuple[str, str]], token: str = TWILIO_TOKEN
) -> dict[str, str]:
    signature = RequestValidator(token).compute_signature(url, MultiDict(fields))
    return {"Content-Type": FORM, "X-Twilio-Signature": signature}


def fire(
    client: FlaskClient, workflow_id: str, body: bytes, headers: dict[str, str], query: str = ""
) -> Any:
    path = f"/api/triggers/webhook/{workflow_id}" + (f"?{query}" if query else "")
    return client.post(path, data=body, headers=headers)


def trigger_seen(
    sessions: sessionmaker[Session],
    settings: Settings,
    publisher: RecordingPublisher,
    run_id: str,
) -> Any:
    """Run the published nodes; what the run's template saw as `trigger`."""
    drive(sessions, settings, publisher.published)
    with sessions() as session:
        run = get_run(session, run_id)
    assert run["status"] == "succeeded", run
    return run["nodes"][0]["output"]["got"]


def count(sessions: sessionmaker[Session], model: Any) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


# Payloads, without HTTP


def test_a_form_is_an_object_with_repeated_keys_as_lists() -> None:
    body = b"To=%2B15550100&Body=hi+there&MediaUrl=a&MediaUrl=b&MediaUrl=c&Empty="
    assert form_payload(body) == {
        "To": "+15550100",
        "Body": "hi there",
        "MediaUrl": ["a", "b", "c"],
        "Empty": "",
    }


def test_a_form_keeps_its_field_order() -> None:
    assert list(form_payload(b"z=1&a=2&m=3")) == ["z", "a", "m"]


@pytest.mark.parametrize("body", [b"text=%ff", b"\xff=1", b"a=%ed%a0%80"])
def test_a_form_that_is_not_utf8_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedBody):
        form_payload(body)


def test_a_form_with_too_many_fields_is_malformed() -> None:
    with pytest.raises(MalformedBody):
        form_payload(b"&".join(b"f=1" for _ in range(MAX_FORM_FIELDS + 1)))


def test_text_is_wrapped_as_an_object_in_its_charset() -> None:
    assert text_payload(b'{"Type": "Notification"}') == {"text": '{"Type": "Notification"}'}
    assert text_payload("café".encode("latin-1"), "latin-1") == {"text": "café"}


def test_text_in_an_unknown_charset_is_malformed() -> None:
    with pytest.raises(MalformedBody):
        text_payload(b"hi", "no-such-charset")


# Bodies real senders post, signed with Standard Webhooks


def test_a_signed_json_array_is_the_runs_trigger(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
    publisher: RecordingPublisher,
) -> None:
    workflow_id = saved(web_sessions, {"type": "webhook", "secrets": [SECRET]})
    events = [{"event": "delivered", "sg_event_id": "e1"}, {"event": "open", "sg_event_id": "e2"}]
    body = json.dumps(events).encode()
    response = fire(client, workflow_id, body, signed(body))
    assert response.status_code == 202, response.json
    assert trigger_seen(web_sessions, web_settings, publisher, response.json["run_id"]) == events


def test_a_signed_text_body_is_the_runs_trigger_as_text(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
    publisher: RecordingPublisher,
) -> None:
    workflow_id = saved(web_sessions, {"type": "webhook", "secrets": [SECRET]})
    body = b'{"Type": "Notification", "Message": "hello"}'  # what AWS SNS posts, as text/plain
    headers = signed(body, "text/plain; charset=UTF-8")
    response = fire(client, workflow_id, body, headers)
    assert response.status_code == 202, response.json
    seen = trigger_seen(web_sessions, web_settings, publisher, response.json["run_id"])
    assert seen == {"text": body.decode()}


def test_a_signed_form_is_the_runs_trigger_as_an_object(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
    publisher: RecordingPublisher,
) -> None:
    workflow_id = saved(web_sessions, {"type": "webhook", "secrets": [SECRET]})
    body = b"lead=42&tag=a&tag=b"
    response = fire(client, workflow_id, body, signed(body, FORM))
    assert response.status_code == 202, response.json
    seen = trigger_seen(web_sessions, web_settings, publisher, response.json["run_id"])
    assert seen == {"lead": "42", "tag": ["a", "b"]}


def test_a_nul_in_a_signed_form_value_is_422_and_records_nothing(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = saved(web_sessions, {"type": "webhook", "secrets": [SECRET]})
    body = b"ok=1&note=a%00b"
    response = fire(client, workflow_id, body, signed(body, FORM))
    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid_text"
    assert [p["path"] for p in response.json["error"]["details"]["problems"]] == ["note"]
    assert count(web_sessions, TriggerEvent) == 0


def test_a_nul_in_a_signed_text_body_is_422(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = saved(web_sessions, {"type": "webhook", "secrets": [SECRET]})
    body = b"a\x00b"
    response = fire(client, workflow_id, body, signed(body, "text/plain"))
    assert response.status_code == 422
    assert response.json["error"]["details"]["problems"][0]["path"] == "text"


def test_a_signed_form_that_is_not_utf8_is_400_malformed_body(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = saved(web_sessions, {"type": "webhook", "secrets": [SECRET]})
    body = b"name=%ff"
    # Standard Webhooks signs text: this body is UTF-8 as bytes, not once percent-decoded.
    response = fire(client, workflow_id, body, signed(body, FORM))
    assert response.status_code == 400
    assert response.json["error"]["code"] == "malformed_body"


def test_an_unsigned_form_is_401_before_its_body_is_read(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = saved(web_sessions, {"type": "webhook", "secrets": [SECRET]})
    response = fire(client, workflow_id, b"note=a%00b", {"Content-Type": FORM})
    assert response.status_code == 401  # not the 422 a signed sender would learn


def test_the_input_schema_applies_to_a_form_payload(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    tool = {
        "name": unique_id("sms_in").replace("-", "_"),
        "description": "An inbound SMS",
        "input_schema": {"type": "object", "required": ["From", "Body"]},
    }
    workflow_id = saved(web_sessions, {"type": "webhook", "secrets": [SECRET]}, tool=tool)
    body = b"From=%2B15550100"
    response = fire(client, workflow_id, body, signed(body, FORM))
    assert response.status_code == 422
    assert response.json["error"]["code"] == "validation_failed"
    assert [p["path"] for p in response.json["error"]["details"]["problems"]] == ["Body"]
    body = b"From=%2B15550100&Body=hi"
    assert fire(client, workflow_id, body, signed(body, FORM)).status_code == 202


# Slack


def test_a_slack_signed_form_starts_a_run_with_the_form_as_trigger(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
    publisher: RecordingPublisher,
) -> None:
    workflow_id = saved(
        web_sessions, {"type": "webhook", "scheme": "slack", "secrets": [SLACK_SECRET]}
    )
    body = b"command=%2Flead&text=42+hot&user_id=U2CERLKJA&text="
    response = fire(client, workflow_id, body, slack_headers(body))
    assert response.status_code == 202, response.json
    seen = trigger_seen(web_sessions, web_settings, publisher, response.json["run_id"])
    assert seen == {"command": "/lead", "text": ["42 hot", ""], "user_id": "U2CERLKJA"}


def test_a_slack_retry_of_the_same_body_returns_the_first_run(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = saved(
        web_sessions, {"type": "webhook", "scheme": "slack", "secrets": [SLACK_SECRET]}
    )
    body = b"command=%2Flead&text=7"
    first = fire(client, workflow_id, body, slack_headers(body))
    retry = fire(client, workflow_id, body, {**slack_headers(body), "X-Slack-Retry-Num": "1"})
    assert (first.status_code, retry.status_code) == (202, 200)
    assert retry.json["run_id"] == first.json["run_id"]


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda h: {k: v for k, v in h.items() if k != "X-Slack-Signature"}, "missing"),
        (lambda h: {**h, "X-Slack-Signature": "v0=nothex"}, "malformed"),
        (lambda h: {**h, "X-Slack-Signature": "v0=" + "0" * 64}, "mismatch"),
    ],
)
def test_a_bad_slack_signature_is_the_generic_401_with_its_reason_logged(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
    tamper: Any,
    reason: str,
) -> None:
    workflow_id = saved(
        web_sessions, {"type": "webhook", "scheme": "slack", "secrets": [SLACK_SECRET]}
    )
    body = b"text=hi"
    with caplog.at_level(logging.WARNING, logger="app.web.triggers"):
        response = fire(client, workflow_id, body, tamper(slack_headers(body)))
    assert response.status_code == 401
    assert {k: response.json["error"][k] for k in ("code", "message")} == GENERIC_401
    assert f"slack scheme): {reason}" in caplog.text
    assert SLACK_SECRET not in caplog.text


@pytest.mark.parametrize(("offset", "reason"), [(-400, "stale"), (400, "future")])
def test_a_slack_signature_out_of_tolerance_is_401(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
    offset: int,
    reason: str,
) -> None:
    workflow_id = saved(
        web_sessions, {"type": "webhook", "scheme": "slack", "secrets": [SLACK_SECRET]}
    )
    body = b"text=hi"
    with caplog.at_level(logging.WARNING, logger="app.web.triggers"):
        response = fire(client, workflow_id, body, slack_headers(body, at=time.time() + offset))
    assert response.status_code == 401
    assert f"slack scheme): {reason}" in caplog.text


# Twilio


def test_a_twilio_signed_form_starts_a_run_with_the_form_as_trigger(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
    publisher: RecordingPublisher,
) -> None:
    workflow_id = saved(
        web_sessions, {"type": "webhook", "scheme": "twilio", "secrets": [TWILIO_TOKEN]}
    )
    fields = [("From", "+15550100"), ("Body", "STOP please"), ("NumMedia", "0")]
    url = f"http://localhost/api/triggers/webhook/{workflow_id}?src=sms"
    headers = {**twilio_headers(url, fields), "I-Twilio-Idempotency-Token": "tw-1"}
    response = fire(client, workflow_id, urlencode(fields).encode(), headers, query="src=sms")
    assert response.status_code == 202, response.json
    seen = trigger_seen(web_sessions, web_settings, publisher, response.json["run_id"])
    assert seen == {"From": "+15550100", "Body": "STOP please", "NumMedia": "0"}
    with web_sessions() as session:
        key = session.scalar(select(TriggerEvent.idempotency_key))
    assert key == "webhook:tw-1"


def test_twilio_behind_a_proxy_is_checked_against_the_public_base_url(
    web_settings: Settings, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = saved(
        web_sessions, {"type": "webhook", "scheme": "twilio", "secrets": [TWILIO_TOKEN]}
    )
    settings = web_settings.model_copy(update={"public_base_url": "https://hooks.example.com/"})
    context = WebContext(settings=settings, sessions=web_sessions, publish=RecordingPublisher())
    client = create_app({"TESTING": True}, context=context).test_client()
    fields = [("From", "+15550100"), ("Body", "hi")]
    body = urlencode(fields).encode()
    public = f"https://hooks.example.com/api/triggers/webhook/{workflow_id}"
    own = f"http://localhost/api/triggers/webhook/{workflow_id}"
    assert fire(client, workflow_id, body, twilio_headers(own, fields)).status_code == 401
    assert fire(client, workflow_id, body, twilio_headers(public, fields)).status_code == 202


def test_a_twilio_signature_over_another_url_is_401(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = saved(
        web_sessions, {"type": "webhook", "scheme": "twilio", "secrets": [TWILIO_TOKEN]}
    )
    fields = [("Body", "hi")]
    url = f"http://localhost/api/triggers/webhook/{workflow_id}?other=1"
    response = fire(client, workflow_id, urlencode(fields).encode(), twilio_headers(url, fields))
    assert response.status_code == 401


# The trigger token


def create_token_workflow(client: FlaskClient, **trigger: Any) -> tuple[str, Any]:
    workflow_id = unique_id("token")
    definition = echo(workflow_id, {"type": "webhook", "scheme": "token", **trigger})
    return workflow_id, client.post("/api/workflows", json=definition, headers=ADMIN)


def test_saving_a_token_workflow_shows_its_token_once(client: FlaskClient) -> None:
    workflow_id, created = create_token_workflow(client)
    assert created.status_code == 201, created.json
    token = created.json["trigger_token"]
    assert token.startswith("whtok_")
    assert created.headers["Cache-Control"] == "no-store"

    read = client.get(f"/api/workflows/{workflow_id}", headers=ADMIN)
    again = client.put(f"/api/workflows/{workflow_id}", json=read.json["definition"], headers=ADMIN)
    assert again.status_code == 200
    assert "trigger_token" not in again.json and "trigger_token" not in read.json
    assert token not in read.text + again.text
    # the later save kept it
    assert fire(client, workflow_id, b"{}", bearer(token)).status_code == 202


def test_put_creating_a_token_workflow_shows_its_token(client: FlaskClient) -> None:
    workflow_id = unique_id("token")
    definition = echo(workflow_id, {"type": "webhook", "scheme": "token"})
    created = client.put(f"/api/workflows/{workflow_id}", json=definition, headers=ADMIN)
    assert created.status_code == 201
    assert (
        fire(client, workflow_id, b"{}", bearer(created.json["trigger_token"])).status_code == 202
    )


def test_the_token_is_stored_only_as_its_hash(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id, created = create_token_workflow(client)
    token = created.json["trigger_token"]
    with web_sessions() as session:
        row = session.get_one(Workflow, workflow_id)
        stored = json.dumps([row.workflow_json, row.trigger_config, row.trigger_token_hash])
    assert row.trigger_token_hash == token_digest(token)
    assert token not in stored


def bearer(token: str, content_type: str = "application/json") -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": content_type}


def test_a_token_delivery_by_header_or_query_starts_a_run_with_its_payload(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
    publisher: RecordingPublisher,
) -> None:
    workflow_id, created = create_token_workflow(client)
    token = created.json["trigger_token"]
    by_header = fire(client, workflow_id, b'[{"n": 1}]', bearer(token))
    by_query = fire(client, workflow_id, b"n=2", {"Content-Type": FORM}, query=f"token={token}")
    assert (by_header.status_code, by_query.status_code) == (202, 202)
    drive(web_sessions, web_settings, publisher.published)
    with web_sessions() as session:
        inputs = [
            session.get_one(WorkflowRun, uuid.UUID(r.json["run_id"])).input
            for r in (by_header, by_query)
        ]
    assert inputs == [[{"n": 1}], {"n": "2"}]


def test_a_token_delivery_with_an_idempotency_key_is_deduplicated_on_it(
    client: FlaskClient,
) -> None:
    workflow_id, created = create_token_workflow(client)
    headers = {**bearer(created.json["trigger_token"]), "Idempotency-Key": "order-9"}
    first = fire(client, workflow_id, b'{"v": 1}', headers)
    again = fire(client, workflow_id, b'{"v": 1}', headers)
    other_body = fire(client, workflow_id, b'{"v": 2}', headers)
    assert (first.status_code, again.status_code, other_body.status_code) == (202, 200, 422)
    assert again.json["run_id"] == first.json["run_id"]


@pytest.mark.parametrize(
    ("headers", "query", "reason"),
    [
        ({"Content-Type": "application/json"}, "", "missing"),
        (bearer("whtok_not-the-token"), "", "mismatch"),
        ({"Content-Type": "application/json"}, "token=whtok_not-the-token", "mismatch"),
    ],
)
def test_a_missing_or_wrong_token_is_the_generic_401(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
    query: str,
    reason: str,
) -> None:
    workflow_id, _ = create_token_workflow(client)
    with caplog.at_level(logging.WARNING, logger="app.web.triggers"):
        response = fire(client, workflow_id, b"{}", headers, query=query)
    assert response.status_code == 401
    assert {k: response.json["error"][k] for k in ("code", "message")} == GENERIC_401
    assert f"token scheme): {reason}" in caplog.text
    assert "whtok_not-the-token" not in caplog.text
    assert count(web_sessions, TriggerEvent) == 0


def test_rotating_the_token_answers_a_new_one_once_and_refuses_the_old(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    workflow_id, created = create_token_workflow(client)
    old = created.json["trigger_token"]
    with caplog.at_level(logging.DEBUG):
        rotated = client.post(f"/api/workflows/{workflow_id}/trigger-token", headers=ADMIN)
        assert rotated.status_code == 200
        assert rotated.headers["Cache-Control"] == "no-store"
        new = rotated.json["trigger_token"]
        assert rotated.json == {"workflow_id": workflow_id, "trigger_token": new}
        assert new != old and new.startswith("whtok_")
        assert fire(client, workflow_id, b'{"a": 1}', bearer(old)).status_code == 401
        assert fire(client, workflow_id, b'{"a": 1}', bearer(new)).status_code == 202
    assert old not in caplog.text and new not in caplog.text


def test_rotating_needs_an_admin_key_and_a_token_trigger(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id, _ = create_token_workflow(client)
    signed_id = saved(web_sessions, {"type": "webhook", "secrets": [SECRET]})
    assert (
        client.post(f"/api/workflows/{workflow_id}/trigger-token", headers=READ).status_code == 403
    )
    assert (
        client.post(f"/api/workflows/{signed_id}/trigger-token", headers=ADMIN).status_code == 409
    )
    assert client.post("/api/workflows/nope/trigger-token", headers=ADMIN).status_code == 404


def test_a_trigger_that_stops_taking_a_token_drops_it_and_a_new_one_is_made_later(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id, created = create_token_workflow(client)
    old = created.json["trigger_token"]
    signed_trigger = echo(workflow_id, {"type": "webhook", "secrets": [SECRET]})
    assert (
        client.put(f"/api/workflows/{workflow_id}", json=signed_trigger, headers=ADMIN).status_code
        == 200
    )
    with web_sessions() as session:
        assert session.get_one(Workflow, workflow_id).trigger_token_hash is None
    back = echo(workflow_id, {"type": "webhook", "scheme": "token"})
    again = client.put(f"/api/workflows/{workflow_id}", json=back, headers=ADMIN)
    assert again.json["trigger_token"] != old
    assert fire(client, workflow_id, b"{}", bearer(old)).status_code == 401


def test_a_token_trigger_with_secrets_is_refused_when_saved(client: FlaskClient) -> None:
    _, created = create_token_workflow(client, secrets=[SECRET])
    assert created.status_code == 422
    assert created.json["error"]["details"]["problems"][0]["path"] == "trigger.secrets"
    assert SECRET not in created.text


def test_a_token_workflow_saved_without_the_api_has_no_token_until_rotated(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = saved(web_sessions, {"type": "webhook", "scheme": "token"})
    response = fire(client, workflow_id, b"{}", bearer("whtok_anything"))
    assert response.status_code == 403
    assert response.json["error"]["code"] == "webhook_not_enabled"
    token = client.post(f"/api/workflows/{workflow_id}/trigger-token", headers=ADMIN).json[
        "trigger_token"
    ]
    assert fire(client, workflow_id, b"{}", bearer(token)).status_code == 202


def test_after_rotation_the_old_token_is_refused_by_a_process_that_remembered_the_workflow(
    pg_client: FlaskClient, pg_sessions: sessionmaker[Session]
) -> None:
    """PostgreSQL: a front end checks a token against its copy of the trigger, read by an
    earlier delivery; the rotation must reach it all the same."""
    workflow_id = unique_id("token-pg")
    with pg_sessions.begin() as session:
        save_workflow(session, echo(workflow_id, {"type": "webhook", "scheme": "token"}))
        old = sync_trigger_token(session, workflow_id)
    assert old is not None
    assert fire(pg_client, workflow_id, b'{"n": 1}', bearer(old)).status_code == 202  # remembered
    with pg_sessions.begin() as session:
        new = rotate_trigger_token(session, workflow_id)
    assert fire(pg_client, workflow_id, b'{"n": 2}', bearer(old)).status_code == 401
    assert fire(pg_client, workflow_id, b'{"n": 2}', bearer(new)).status_code == 202
