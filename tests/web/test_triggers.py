"""Signed webhook triggers and POST /api/workflow/execute over the Flask test client."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook

from app.config import Settings
from app.models import TriggerEvent, Workflow, WorkflowRun
from app.web import create_app
from app.web.context import WebContext
from app.workflows import save_workflow
from app.workflows.store import set_workflow_status
from tests.web.conftest import ADMIN, READ, RecordingPublisher

#: The run and trigger contract: on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_databases

SECRET = "whsec_" + base64.b64encode(b"current-secret-32-bytes-long!!!!").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"retiring-secret-32-bytes-long!!!").decode()
GITHUB_SECRET = "It's a Secret to Everybody"
STRIPE_SECRET = "whsec_stripe_test_secret"
GENERIC_401 = {
    "error": {
        "code": "invalid_signature",
        "message": "signature verification failed",
        "details": None,
    }
}


def definition(workflow_id: str, trigger: dict[str, Any]) -> dict[str, Any]:
    return {
        "workflow_id": workflow_id,
        "trigger": trigger,
        "nodes": [{"id": "shape", "type": "transform", "params": {"values": {"ok": True}}}],
    }


@pytest.fixture(autouse=True)
def workflows(web_sessions: sessionmaker[Session]) -> None:
    with web_sessions.begin() as session:
        save_workflow(
            session, definition("lead", {"type": "webhook", "secrets": [SECRET, OLD_SECRET]})
        )
        save_workflow(
            session,
            definition("gh", {"type": "webhook", "scheme": "github", "secrets": [GITHUB_SECRET]}),
        )
        save_workflow(
            session,
            definition(
                "stripe", {"type": "webhook", "scheme": "stripe", "secrets": [STRIPE_SECRET]}
            ),
        )
        save_workflow(session, definition("by-hand", {"type": "manual"}))


def signed(
    body: bytes,
    *,
    secret: str = SECRET,
    message_id: str = "msg_1",
    at: float | None = None,
) -> dict[str, str]:
    """Standard Webhooks headers, as a sender such as Svix sends them."""
    signed_at = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(signed_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, signed_at, body.decode()),
    }


def fire(
    client: FlaskClient, body: bytes, headers: dict[str, str], workflow_id: str | None = "lead"
) -> Any:
    path = "/api/triggers/webhook" + (f"/{workflow_id}" if workflow_id else "")
    return client.post(path, data=body, headers=headers)


def count(sessions: sessionmaker[Session], model: Any) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


BODY = b'{"lead_id": "42", "phone": "+15550100"}'


# Accepted, and accepted once


def test_a_signed_delivery_starts_a_run_and_answers_202(
    client: FlaskClient, publisher: RecordingPublisher, web_sessions: sessionmaker[Session]
) -> None:
    response = fire(client, BODY, signed(BODY))
    assert response.status_code == 202
    run_id = response.json["run_id"]
    assert response.json == {
        "run_id": run_id,
        "status": "queued",
        "status_url": f"/api/runs/{run_id}",
    }
    assert response.headers["Location"] == f"/api/runs/{run_id}"
    assert [(ref.run_id, ref.node_id) for ref in publisher.published] == [(run_id, "shape")]
    with web_sessions() as session:
        run = session.scalars(select(WorkflowRun)).one()
        event = session.scalars(select(TriggerEvent)).one()
    assert run.input == {"lead_id": "42", "phone": "+15550100"}
    assert (event.run_id, run.trigger_event_id) == (run.run_id, event.id)
    assert event.request_hash == hashlib.sha256(BODY).hexdigest()


def test_repeated_delivery_returns_the_first_run(
    client: FlaskClient, publisher: RecordingPublisher, web_sessions: sessionmaker[Session]
) -> None:
    first = fire(client, BODY, signed(BODY))
    again = fire(client, BODY, signed(BODY))  # a retry: signed again, same webhook-id and body
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == {**first.json, "duplicate": True}
    assert "Idempotent-Replayed" not in first.headers
    assert len(publisher.published) == 1
    assert count(web_sessions, WorkflowRun) == 1


def test_same_key_with_another_body_is_422_and_starts_nothing(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    fire(client, BODY, signed(BODY))
    other = b'{"lead_id": "43"}'
    response = fire(client, other, signed(other))
    assert response.status_code == 422
    assert response.json["error"]["code"] == "idempotency_key_reused"
    assert count(web_sessions, WorkflowRun) == 1


def test_different_keys_start_different_runs(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    first = fire(client, BODY, signed(BODY, message_id="msg_a"))
    second = fire(client, BODY, signed(BODY, message_id="msg_b"))
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json["run_id"] != second.json["run_id"]
    assert count(web_sessions, WorkflowRun) == 2


def test_a_second_active_secret_is_accepted_during_rotation(client: FlaskClient) -> None:
    assert fire(client, BODY, signed(BODY, secret=OLD_SECRET)).status_code == 202


# Refused with a generic 401, the reason logged


def _without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {key: value for key, value in headers.items() if key != name}


@pytest.mark.parametrize(
    ("reason", "make"),
    [
        ("missing", lambda: (BODY, _without(signed(BODY), "webhook-signature"))),
        ("mismatch", lambda: (b'{"lead_id": "666"}', signed(BODY))),
        ("mismatch", lambda: (BODY, signed(BODY, secret="whsec_" + "A" * 32))),
        ("stale", lambda: (BODY, signed(BODY, at=time.time() - 600))),
        ("future", lambda: (BODY, signed(BODY, at=time.time() + 600))),
        ("malformed", lambda: (BODY, {**signed(BODY), "webhook-timestamp": "now"})),
    ],
)
def test_a_bad_signature_is_a_generic_401_with_the_reason_in_the_log(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
    reason: str,
    make: Callable[[], tuple[bytes, dict[str, str]]],
) -> None:
    body, headers = make()
    with caplog.at_level(logging.WARNING, logger="app.web.triggers"):
        response = fire(client, body, headers)
    assert response.status_code == 401
    assert response.json == GENERIC_401
    assert f"lead rejected (standard scheme): {reason}" in caplog.text
    assert count(web_sessions, TriggerEvent) == 0


def test_secrets_never_appear_in_answers_or_logs(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    answers = []
    with caplog.at_level(logging.DEBUG):
        answers.append(fire(client, BODY, signed(BODY)))
        answers.append(fire(client, b'{"x": 1}', signed(BODY)))
        answers.append(fire(client, BODY, signed(BODY, at=time.time() - 900)))
        answers.append(fire(client, b"[]", signed(b"[]", message_id="m2")))
        answers.append(client.post("/api/triggers/webhook/gh", data=b"{}", headers={}))
    for secret in (SECRET, OLD_SECRET, GITHUB_SECRET, SECRET.removeprefix("whsec_")):
        assert secret not in caplog.text
        for answer in answers:
            assert secret not in answer.get_data(as_text=True)
            assert all(secret not in value for _, value in answer.headers.items())


# The GitHub and Stripe presets


def github_headers(body: bytes, delivery: str | None = "72d3162e") -> dict[str, str]:
    digest = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}
    if delivery:
        headers["X-GitHub-Delivery"] = delivery
    return headers


def test_github_published_test_vector_passes_the_signature_check(client: FlaskClient) -> None:
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": (
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        ),
    }
    response = fire(client, b"Hello, World!", headers, "gh")
    # Verified, so the answer is about the body (not JSON), never a 401.
    assert response.status_code == 400
    assert response.json["error"]["code"] == "malformed_json"


def test_github_delivery_is_deduplicated_on_its_delivery_id(client: FlaskClient) -> None:
    body = b'{"action": "opened", "number": 7}'
    first = fire(client, body, github_headers(body), "gh")
    again = fire(client, body, github_headers(body), "gh")
    assert first.status_code == 202
    assert (again.status_code, again.json["run_id"]) == (200, first.json["run_id"])


def test_github_tampered_delivery_is_401(client: FlaskClient) -> None:
    headers = github_headers(b'{"action": "opened"}')
    response = fire(client, b'{"action": "closed"}', headers, "gh")
    assert (response.status_code, response.json) == (401, GENERIC_401)


def stripe_headers(body: bytes, at: float | None = None) -> dict[str, str]:
    stamp = int(time.time() if at is None else at)
    digest = hmac.new(
        STRIPE_SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return {"Content-Type": "application/json", "Stripe-Signature": f"t={stamp},v1={digest}"}


def test_stripe_retry_signed_at_another_time_is_a_duplicate(client: FlaskClient) -> None:
    body = b'{"id": "evt_1", "type": "invoice.paid"}'
    first = fire(client, body, stripe_headers(body, at=time.time() - 60), "stripe")
    again = fire(client, body, stripe_headers(body), "stripe")
    assert first.status_code == 202
    assert (again.status_code, again.json["run_id"]) == (200, first.json["run_id"])


def test_stripe_stale_signature_is_401(client: FlaskClient) -> None:
    body = b'{"id": "evt_2"}'
    response = fire(client, body, stripe_headers(body, at=time.time() - 600), "stripe")
    assert (response.status_code, response.json) == (401, GENERIC_401)


# The seed's path and the workflow's state


def test_seed_path_takes_the_workflow_from_the_x_workflow_id_header(client: FlaskClient) -> None:
    response = fire(client, BODY, {**signed(BODY), "X-Workflow-Id": "lead"}, workflow_id=None)
    assert response.status_code == 202


def test_seed_path_takes_the_workflow_from_the_body(client: FlaskClient) -> None:
    body = b'{"workflow_id": "lead", "lead_id": "42"}'
    response = fire(client, body, signed(body), workflow_id=None)
    assert response.status_code == 202


def test_seed_path_without_a_workflow_id_is_422(client: FlaskClient) -> None:
    response = fire(client, BODY, signed(BODY), workflow_id=None)
    assert response.status_code == 422
    assert response.json["error"]["details"]["problems"][0]["path"] == "workflow_id"


@pytest.mark.parametrize("seed_path", [False, True])
def test_unknown_workflow_is_404(client: FlaskClient, seed_path: bool) -> None:
    headers = {**signed(BODY), "X-Workflow-Id": "nope"}
    response = fire(client, BODY, headers, workflow_id=None if seed_path else "nope")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


def test_paused_workflow_is_409_and_records_nothing(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    with web_sessions.begin() as session:
        session.get_one(Workflow, "lead").status = "paused"
    response = fire(client, BODY, signed(BODY))
    assert response.status_code == 409
    assert count(web_sessions, TriggerEvent) == 0


def test_workflow_without_a_webhook_trigger_is_403(client: FlaskClient) -> None:
    response = fire(client, BODY, signed(BODY), "by-hand")
    assert response.status_code == 403
    assert response.json["error"]["code"] == "webhook_not_enabled"


# The body


def test_a_signed_json_body_that_is_neither_object_nor_array_is_422(client: FlaskClient) -> None:
    response = fire(client, b'"42"', signed(b'"42"'))
    assert response.status_code == 422
    assert response.json["error"]["code"] == "validation_failed"


def test_a_signed_body_of_another_content_type_is_415(client: FlaskClient) -> None:
    headers = {**signed(b"<a/>"), "Content-Type": "application/xml"}
    assert fire(client, b"<a/>", headers).status_code == 415


def test_the_raw_bytes_are_verified_not_a_reencoding(client: FlaskClient) -> None:
    body = b'{ "lead_id" :\n  "42" }'  # whitespace a re-serialisation would lose
    assert fire(client, body, signed(body)).status_code == 202


# Admission control


def make_client(
    web_settings: Settings,
    web_sessions: sessionmaker[Session],
    depth: int | None,
) -> FlaskClient:
    context = WebContext(
        settings=web_settings,
        sessions=web_sessions,
        publish=RecordingPublisher(),
        queue_depth=lambda: depth,
    )
    return create_app({"TESTING": True}, context=context).test_client()


def test_past_the_queue_depth_limit_a_trigger_is_503_with_retry_after(
    web_settings: Settings, web_sessions: sessionmaker[Session]
) -> None:
    client = make_client(web_settings, web_sessions, web_settings.max_queue_depth + 1)
    response = fire(client, BODY, signed(BODY))
    assert response.status_code == 503
    assert response.json["error"]["code"] == "overloaded"
    assert int(response.headers["Retry-After"]) > 0
    assert count(web_sessions, TriggerEvent) == 0


def test_past_the_queue_depth_limit_execute_is_503(
    web_settings: Settings, web_sessions: sessionmaker[Session]
) -> None:
    client = make_client(web_settings, web_sessions, 10**9)
    response = client.post("/api/workflow/execute", json={"workflow_id": "lead"}, headers=ADMIN)
    assert response.status_code == 503
    assert "Retry-After" in response.headers


@pytest.mark.parametrize("depth", [None, 0])
def test_an_unknown_or_short_queue_admits(
    web_settings: Settings, web_sessions: sessionmaker[Session], depth: int | None
) -> None:
    client = make_client(web_settings, web_sessions, depth)
    assert fire(client, BODY, signed(BODY)).status_code == 202


# POST /api/workflow/execute


def execute(client: FlaskClient, body: Any, **headers: str) -> Any:
    return client.post("/api/workflow/execute", json=body, headers={**ADMIN, **headers})


def test_execute_starts_a_run_with_the_input(
    client: FlaskClient, publisher: RecordingPublisher, web_sessions: sessionmaker[Session]
) -> None:
    response = execute(client, {"workflow_id": "by-hand", "input": {"n": 1}})
    assert response.status_code == 202
    run_id = response.json["run_id"]
    assert response.json == {
        "run_id": run_id,
        "status": "queued",
        "status_url": f"/api/runs/{run_id}",
    }
    assert [ref.run_id for ref in publisher.published] == [run_id]
    with web_sessions() as session:
        assert session.scalars(select(WorkflowRun.input)).one() == {"n": 1}


def test_execute_input_defaults_to_an_empty_object(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    assert execute(client, {"workflow_id": "by-hand"}).status_code == 202
    with web_sessions() as session:
        assert session.scalars(select(WorkflowRun.input)).one() == {}


def test_execute_without_an_idempotency_key_starts_a_run_every_time(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    execute(client, {"workflow_id": "by-hand"})
    execute(client, {"workflow_id": "by-hand"})
    assert count(web_sessions, WorkflowRun) == 2
    assert count(web_sessions, TriggerEvent) == 0


def test_execute_repeat_with_the_same_idempotency_key_returns_the_first_run(
    client: FlaskClient, publisher: RecordingPublisher
) -> None:
    body = {"workflow_id": "by-hand", "input": {"a": 1, "b": 2}}
    first = execute(client, body, **{"Idempotency-Key": "k-1"})
    reordered = {"input": {"b": 2, "a": 1}, "workflow_id": "by-hand"}  # the same JSON value
    again = execute(client, reordered, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == {**first.json, "duplicate": True}
    assert len(publisher.published) == 1


def test_execute_same_idempotency_key_with_another_body_is_422(client: FlaskClient) -> None:
    execute(client, {"workflow_id": "by-hand", "input": {"a": 1}}, **{"Idempotency-Key": "k"})
    response = execute(
        client, {"workflow_id": "by-hand", "input": {"a": 2}}, **{"Idempotency-Key": "k"}
    )
    assert response.status_code == 422
    assert response.json["error"]["code"] == "idempotency_key_reused"


def test_execute_keys_do_not_collide_with_webhook_ids(client: FlaskClient) -> None:
    fired = fire(client, BODY, signed(BODY, message_id="shared"))
    executed = execute(client, {"workflow_id": "lead"}, **{"Idempotency-Key": "shared"})
    assert (fired.status_code, executed.status_code) == (202, 202)


def test_execute_an_overlong_idempotency_key_is_400(client: FlaskClient) -> None:
    response = execute(client, {"workflow_id": "by-hand"}, **{"Idempotency-Key": "k" * 256})
    assert response.status_code == 400


def test_execute_unknown_workflow_is_404(client: FlaskClient) -> None:
    assert execute(client, {"workflow_id": "nope"}).status_code == 404


def test_execute_with_a_read_key_is_403(client: FlaskClient) -> None:
    response = client.post("/api/workflow/execute", json={"workflow_id": "lead"}, headers=READ)
    assert response.status_code == 403


def test_execute_without_a_key_is_401(client: FlaskClient) -> None:
    response = client.post("/api/workflow/execute", json={"workflow_id": "lead"})
    assert response.status_code == 401


def test_execute_with_an_unknown_field_is_422(client: FlaskClient) -> None:
    response = execute(client, {"workflow_id": "by-hand", "inputs": {}})
    assert response.status_code == 422
    assert json.dumps(response.json).count("inputs") >= 1


# The rules' order, on both databases: a known delivery first, then the workflow's state, then
# the checks that do not depend on the signature (issue 14: on PostgreSQL a repeat to a paused
# workflow answered 409, and everywhere a resend after a schema change answered 422).


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _tool_workflow(sessions: sessionmaker[Session], workflow_id: str, required: list[str]) -> None:
    """A webhook workflow whose input schema requires `required` (a new version each call)."""
    raw = definition(workflow_id, {"type": "webhook", "secrets": [SECRET]})
    raw["tool"] = {
        "name": workflow_id.replace("-", "_"),
        "description": "A lead",
        "input_schema": {"type": "object", "required": required},
    }
    with sessions.begin() as session:
        save_workflow(session, raw)


def _pause(sessions: sessionmaker[Session], workflow_id: str) -> None:
    with sessions.begin() as session:
        set_workflow_status(session, workflow_id, "paused")


def _runs_of(sessions: sessionmaker[Session], workflow_id: str) -> int:
    with sessions() as session:
        query = select(func.count()).where(WorkflowRun.workflow_id == workflow_id)
        return int(session.scalar(query) or 0)


def test_a_repeat_to_a_paused_workflow_returns_the_first_run(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = _unique("paused-repeat")
    _tool_workflow(web_sessions, workflow_id, [])
    first = fire(client, BODY, signed(BODY, message_id="msg_p"), workflow_id)
    assert first.status_code == 202
    _pause(web_sessions, workflow_id)

    again = fire(client, BODY, signed(BODY, message_id="msg_p"), workflow_id)
    other = b'{"lead_id": "43"}'
    reused = fire(client, other, signed(other, message_id="msg_p"), workflow_id)
    new = fire(client, BODY, signed(BODY, message_id="msg_q"), workflow_id)

    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json == {**first.json, "duplicate": True}
    assert reused.status_code == 422
    assert reused.json["error"]["code"] == "idempotency_key_reused"
    assert new.status_code == 409 and "paused" in new.json["error"]["message"]
    assert _runs_of(web_sessions, workflow_id) == 1


def test_a_resend_after_the_input_schema_tightened_returns_the_first_run(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = _unique("tightened")
    _tool_workflow(web_sessions, workflow_id, ["lead_id"])
    first = fire(client, BODY, signed(BODY, message_id="msg_t"), workflow_id)
    assert first.status_code == 202
    _tool_workflow(web_sessions, workflow_id, ["lead_id", "email"])  # version 2

    again = fire(client, BODY, signed(BODY, message_id="msg_t"), workflow_id)
    new = fire(client, BODY, signed(BODY, message_id="msg_u"), workflow_id)

    assert again.status_code == 200 and again.json == {**first.json, "duplicate": True}
    assert new.status_code == 422 and new.json["error"]["code"] == "validation_failed"
    assert [p["path"] for p in new.json["error"]["details"]["problems"]] == ["email"]
    assert _runs_of(web_sessions, workflow_id) == 1


def test_an_execute_repeat_to_a_paused_workflow_returns_the_first_run(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = _unique("paused-execute")
    _tool_workflow(web_sessions, workflow_id, [])
    body = {"workflow_id": workflow_id, "input": {"lead_id": "42"}}
    first = execute(client, body, **{"Idempotency-Key": "k-p"})
    assert first.status_code == 202
    _pause(web_sessions, workflow_id)

    again = execute(client, body, **{"Idempotency-Key": "k-p"})
    new = execute(client, body, **{"Idempotency-Key": "k-q"})

    assert again.status_code == 200 and again.json == {**first.json, "duplicate": True}
    assert new.status_code == 409
    assert _runs_of(web_sessions, workflow_id) == 1


def test_an_execute_resend_after_the_input_schema_tightened_returns_the_first_run(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = _unique("tightened-execute")
    _tool_workflow(web_sessions, workflow_id, ["lead_id"])
    body = {"workflow_id": workflow_id, "input": {"lead_id": "42"}}
    first = execute(client, body, **{"Idempotency-Key": "k-t"})
    assert first.status_code == 202
    _tool_workflow(web_sessions, workflow_id, ["lead_id", "email"])

    again = execute(client, body, **{"Idempotency-Key": "k-t"})
    new = execute(client, body, **{"Idempotency-Key": "k-u"})

    assert again.status_code == 200 and again.json == {**first.json, "duplicate": True}
    assert new.status_code == 422 and new.json["error"]["code"] == "validation_failed"
    assert [p["path"] for p in new.json["error"]["details"]["problems"]] == ["input.email"]
    assert _runs_of(web_sessions, workflow_id) == 1
