"""GET /api/workflows/<id>/deliveries: the webhook delivery log, accepted and refused;
refusals recorded by the front end's hook, sampled, and pruned."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook

from app.models import TriggerEvent, utcnow
from app.models.tables import WebhookRefusal
from app.web.deliveries import MAX_RECORDED_PER_S, RefusalLog
from app.workflows import save_workflow, set_workflow_status
from app.workflows.deliveries import Refusal, record_refusal
from tests.web.conftest import ADMIN, READ
from tests.web.factories import unique_id

#: The run and trigger contract: on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_databases

SECRET = "whsec_" + base64.b64encode(b"delivery-log-secret-32-bytes!!!!").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"a-forger-guessing-32-bytes-long!").decode()
BODY = b'{"lead_id": "42"}'


def definition(workflow_id: str, trigger: dict[str, Any]) -> dict[str, Any]:
    return {
        "workflow_id": workflow_id,
        "trigger": trigger,
        "nodes": [{"id": "shape", "type": "transform", "params": {"values": {"ok": True}}}],
    }


def webhook(sessions: sessionmaker[Session], trigger: dict[str, Any] | None = None) -> str:
    workflow_id = unique_id("hook")
    with sessions.begin() as session:
        save_workflow(
            session, definition(workflow_id, trigger or {"type": "webhook", "secrets": [SECRET]})
        )
    return workflow_id


@pytest.fixture
def lead(web_sessions: sessionmaker[Session]) -> str:
    return webhook(web_sessions)


def signed(
    body: bytes, message_id: str, *, secret: str = SECRET, at: float | None = None
) -> dict[str, str]:
    signed_at = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(signed_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, signed_at, body.decode()),
    }


def fire(client: FlaskClient, workflow_id: str, headers: dict[str, str], body: bytes = BODY) -> Any:
    return client.post(f"/api/triggers/webhook/{workflow_id}", data=body, headers=headers)


def deliveries(client: FlaskClient, workflow_id: str, query: str = "") -> Any:
    answer = client.get(f"/api/workflows/{workflow_id}/deliveries{query}", headers=READ)
    assert answer.status_code == 200, answer.json
    return answer.json


def refusal_rows(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(WebhookRefusal)) or 0)


# What the log shows


def test_the_log_lists_an_accepted_and_a_refused_delivery_newest_first(
    client: FlaskClient, lead: str
) -> None:
    accepted = fire(client, lead, signed(BODY, "msg_good"))
    refused = fire(client, lead, signed(BODY, "msg_forged", secret=OTHER_SECRET))
    assert (accepted.status_code, refused.status_code) == (202, 401)

    page = deliveries(client, lead)

    assert page["next_cursor"] is None
    assert [{k: v for k, v in d.items() if k != "received_at"} for d in page["deliveries"]] == [
        {
            "status": 401,
            "reason": "mismatch",
            "scheme": "standard",
            "delivery_id": "msg_forged",
            "run_id": None,
            "source_address": "127.0.0.1",
        },
        {
            "status": 202,
            "reason": None,
            "scheme": "standard",
            "delivery_id": "msg_good",
            "run_id": accepted.json["run_id"],
            "source_address": None,
        },
    ]
    newest, oldest = (d["received_at"] for d in page["deliveries"])
    assert newest >= oldest and newest.endswith("Z")


def _missing(body: bytes, message_id: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "webhook-id": message_id}


def _malformed(body: bytes, message_id: str) -> dict[str, str]:
    return {**signed(body, message_id), "webhook-signature": "v1,not base64!"}


def _stale(body: bytes, message_id: str) -> dict[str, str]:
    return signed(body, message_id, at=time.time() - 3600)


def _future(body: bytes, message_id: str) -> dict[str, str]:
    return signed(body, message_id, at=time.time() + 3600)


@pytest.mark.parametrize(
    ("headers", "body", "status", "reason"),
    [
        (_missing, BODY, 401, "missing"),
        (_malformed, BODY, 401, "malformed"),
        (_stale, BODY, 401, "stale"),
        (_future, BODY, 401, "future"),
        (signed, b'{"lead_id": ', 400, "invalid_body"),
    ],
    ids=["missing", "malformed", "stale", "future", "invalid_body"],
)
def test_each_refusal_is_listed_with_its_reason_and_the_delivery_id_it_claimed(
    client: FlaskClient,
    lead: str,
    headers: Callable[[bytes, str], dict[str, str]],
    body: bytes,
    status: int,
    reason: str,
) -> None:
    assert fire(client, lead, headers(body, "msg_7"), body).status_code == status

    [delivery] = deliveries(client, lead)["deliveries"]

    assert (delivery["status"], delivery["reason"]) == (status, reason)
    assert (delivery["delivery_id"], delivery["run_id"]) == ("msg_7", None)


def test_a_delivery_to_a_paused_workflow_is_listed_as_paused(
    client: FlaskClient, lead: str, web_sessions: sessionmaker[Session]
) -> None:
    with web_sessions.begin() as session:
        set_workflow_status(session, lead, "paused")

    assert fire(client, lead, signed(BODY, "msg_paused")).status_code == 409

    [delivery] = deliveries(client, lead)["deliveries"]
    assert (delivery["status"], delivery["reason"], delivery["delivery_id"]) == (
        409,
        "paused",
        "msg_paused",
    )


def test_a_delivery_to_a_workflow_without_a_webhook_is_listed_as_not_enabled(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    by_hand = webhook(web_sessions, {"type": "manual"})

    assert fire(client, by_hand, signed(BODY, "msg_1")).status_code == 403

    [delivery] = deliveries(client, by_hand)["deliveries"]
    assert (delivery["status"], delivery["reason"], delivery["scheme"]) == (
        403,
        "not_enabled",
        None,
    )


def test_a_replayed_delivery_is_listed_once(client: FlaskClient, lead: str) -> None:
    first = fire(client, lead, signed(BODY, "msg_1"))
    assert fire(client, lead, signed(BODY, "msg_1")).status_code == 200

    listed = deliveries(client, lead)["deliveries"]

    assert [(d["delivery_id"], d["run_id"]) for d in listed] == [("msg_1", first.json["run_id"])]


def test_other_sources_of_runs_are_not_webhook_deliveries(client: FlaskClient, lead: str) -> None:
    started = client.post(
        "/api/workflow/execute",
        json={"workflow_id": lead, "input": {}},
        headers={**ADMIN, "Idempotency-Key": "api-key-1"},
    )
    assert started.status_code == 202

    assert deliveries(client, lead)["deliveries"] == []


def test_the_log_never_shows_a_secret_or_a_signature(client: FlaskClient, lead: str) -> None:
    good, forged = signed(BODY, "msg_1"), signed(BODY, "msg_2", secret=OTHER_SECRET)
    fire(client, lead, good)
    fire(client, lead, forged)

    text = client.get(f"/api/workflows/{lead}/deliveries", headers=READ).get_data(as_text=True)

    for secret in (SECRET, OTHER_SECRET, good["webhook-signature"], forged["webhook-signature"]):
        assert secret not in text
        assert secret.split(",", 1)[-1] not in text


def test_a_delivery_to_an_unknown_workflow_is_not_recorded(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    assert fire(client, "nobody-here", signed(BODY, "msg_1")).status_code == 404

    assert refusal_rows(web_sessions) == 0


# Reading it


def test_the_log_of_an_unknown_workflow_is_404(client: FlaskClient) -> None:
    answer = client.get("/api/workflows/nobody-here/deliveries", headers=READ)

    assert answer.status_code == 404
    assert answer.json["error"]["code"] == "not_found"


def test_the_log_needs_an_api_key(client: FlaskClient, lead: str) -> None:
    assert client.get(f"/api/workflows/{lead}/deliveries").status_code == 401


def test_paging_walks_every_delivery_once_newest_first(client: FlaskClient, lead: str) -> None:
    for n in range(3):
        assert fire(client, lead, signed(BODY, f"msg_ok_{n}")).status_code == 202
        forged = signed(BODY, f"msg_bad_{n}", secret=OTHER_SECRET)
        assert fire(client, lead, forged).status_code == 401

    seen, cursor, pages = [], "", 0
    while True:
        page = deliveries(client, lead, f"?limit=2{cursor}")
        pages += 1
        assert len(page["deliveries"]) <= 2
        seen += [d["delivery_id"] for d in page["deliveries"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"

    assert seen == [
        f"msg_{kind}_{n}" for n in (2, 1, 0) for kind in ("bad", "ok")
    ]  # each refusal came after its acceptance
    assert pages == 3


def test_paging_is_stable_at_equal_times(
    client: FlaskClient, lead: str, web_sessions: sessionmaker[Session]
) -> None:
    """Acceptances and refusals of the same instant: refusals first, then by id, none twice."""
    fire(client, lead, signed(BODY, "msg_a"))
    fire(client, lead, signed(BODY, "msg_b"))
    same = utcnow().replace(microsecond=0)
    with web_sessions.begin() as session:
        session.execute(update(TriggerEvent).values(received_at=same))
        for n in range(2):
            record_refusal(session, Refusal(lead, 401, "mismatch", delivery_id=f"r{n}"), now=same)

    seen, cursor = [], ""
    for _ in range(4):
        page = deliveries(client, lead, f"?limit=1{cursor}")
        seen += [d["delivery_id"] for d in page["deliveries"]]
        cursor = f"&cursor={page['next_cursor']}"

    assert seen == ["r1", "r0", "msg_b", "msg_a"]
    assert page["next_cursor"] is None


@pytest.mark.parametrize(
    "cursor", ["nonsense", "W1tdXQ", base64.urlsafe_b64encode(b"[1,2]").decode()]
)
def test_a_cursor_from_nowhere_is_422(client: FlaskClient, lead: str, cursor: str) -> None:
    answer = client.get(f"/api/workflows/{lead}/deliveries?cursor={cursor}", headers=READ)

    assert answer.status_code == 422
    assert answer.json["error"]["details"]["problems"][0]["path"] == "cursor"


# Bounded


def test_deliveries_older_than_the_retention_are_hidden_and_old_refusals_deleted(
    client: FlaskClient, lead: str, web_sessions: sessionmaker[Session]
) -> None:
    eight_days_ago = utcnow() - timedelta(days=8)
    first = fire(client, lead, signed(BODY, "msg_old"))
    with web_sessions.begin() as session:
        session.execute(update(TriggerEvent).values(received_at=eight_days_ago))
        record_refusal(session, Refusal(lead, 401, "stale", delivery_id="old"), now=eight_days_ago)
    assert refusal_rows(web_sessions) == 1

    forged = signed(BODY, "msg_new", secret=OTHER_SECRET)
    assert fire(client, lead, forged).status_code == 401  # recorded, pruning the old one

    assert [d["delivery_id"] for d in deliveries(client, lead)["deliveries"]] == ["msg_new"]
    assert refusal_rows(web_sessions) == 1
    # The accepted one is still the idempotency record: a repeat finds the first run.
    assert fire(client, lead, signed(BODY, "msg_old")).json["run_id"] == first.json["run_id"]


def test_refusals_are_sampled_per_workflow_and_second(
    web_sessions: sessionmaker[Session], lead: str
) -> None:
    now = [1000.0]
    refusal_log = RefusalLog(web_sessions, days=7, clock=lambda: now[0])

    written = [refusal_log.record(Refusal(lead, 401, "mismatch")) for _ in range(15)]
    now[0] += 1
    written.append(refusal_log.record(Refusal(lead, 401, "mismatch")))

    assert written == [True] * MAX_RECORDED_PER_S + [False] * 5 + [True]
    assert refusal_rows(web_sessions) == MAX_RECORDED_PER_S + 1


def test_a_refusal_that_cannot_be_written_is_dropped_with_a_warning(
    web_sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    refusal_log = RefusalLog(web_sessions, days=7)

    # No such workflow: the foreign key refuses the row.
    assert refusal_log.record(Refusal("nobody-here", 401, "mismatch")) is False

    assert "could not record a refused webhook delivery" in caplog.text


# PostgreSQL


def test_postgres_the_log_lists_accepted_and_refused_deliveries(
    pg_client: FlaskClient, pg_sessions: sessionmaker[Session]
) -> None:
    lead = webhook(pg_sessions)
    accepted = fire(pg_client, lead, signed(BODY, "msg_pg_good"))
    assert accepted.status_code == 202
    assert fire(pg_client, lead, _stale(BODY, "msg_pg_stale")).status_code == 401

    listed = pg_client.get(f"/api/workflows/{lead}/deliveries?limit=1", headers=READ).json
    older = pg_client.get(
        f"/api/workflows/{lead}/deliveries?cursor={listed['next_cursor']}", headers=READ
    ).json

    assert [(d["delivery_id"], d["reason"]) for d in listed["deliveries"]] == [
        ("msg_pg_stale", "stale")
    ]
    assert [(d["delivery_id"], d["run_id"]) for d in older["deliveries"]] == [
        ("msg_pg_good", accepted.json["run_id"])
    ]
    assert older["next_cursor"] is None
