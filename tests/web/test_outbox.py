"""GET /api/outbox: what email and SMS nodes stored instead of sending."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from tests.web.conftest import ADMIN, READ
from tests.web.factories import drive, save, start, unique_id


def messaging_workflow() -> dict[str, Any]:
    return {
        "workflow_id": unique_id("messaging"),
        "nodes": [
            {
                "id": "email",
                "type": "email_send",
                "params": {
                    "to": "{{ trigger.email }}",
                    "subject": "Welcome {{ trigger.name }}",
                    "body": "Hello {{ trigger.name }}",
                },
                "next": "sms",
            },
            {
                "id": "sms",
                "type": "twilio_sms",
                "params": {"to": "{{ trigger.phone }}", "body": "Hi {{ trigger.name }}"},
            },
        ],
    }


def run_once(
    sessions: sessionmaker[Session], settings: Settings, workflow_id: str, name: str
) -> str:
    payload = {"email": f"{name.lower()}@example.com", "name": name, "phone": "+14155552671"}
    started = start(sessions, workflow_id, payload)
    drive(sessions, settings, started.to_publish)
    return started.run_id


def test_a_runs_messages_are_listed_newest_first(
    client: FlaskClient, web_sessions: sessionmaker[Session], web_settings: Settings
) -> None:
    workflow_id = save(web_sessions, messaging_workflow())
    first = run_once(web_sessions, web_settings, workflow_id, "Ada")
    second = run_once(web_sessions, web_settings, workflow_id, "Grace")

    answer = client.get("/api/outbox", query_string={"run_id": first}, headers=READ)
    everything = client.get("/api/outbox", headers=READ)
    one = client.get("/api/outbox", query_string={"limit": 1}, headers=READ)

    assert answer.status_code == 200
    messages = answer.json["messages"]
    assert [(m["channel"], m["node_id"], m["run_id"]) for m in messages] == [
        ("sms", "sms", first),
        ("email", "email", first),
    ]
    assert messages[0]["message"] == {"from": None, "to": "+14155552671", "body": "Hi Ada"}
    assert messages[1]["message"]["subject"] == "Welcome Ada"
    assert messages[1]["message"]["to"] == ["ada@example.com"]
    assert len(everything.json["messages"]) == 4
    assert [m["run_id"] for m in one.json["messages"]] == [second]


def test_the_nodes_say_they_used_the_outbox(
    client: FlaskClient, web_sessions: sessionmaker[Session], web_settings: Settings
) -> None:
    workflow_id = save(web_sessions, messaging_workflow())
    run_id = run_once(web_sessions, web_settings, workflow_id, "Ada")
    run = client.get(f"/api/runs/{run_id}", headers=READ).json
    assert run["status"] == "succeeded"
    assert [node["output"]["backend"] for node in run["nodes"]] == ["outbox", "outbox"]


def test_an_unknown_run_has_no_messages(client: FlaskClient) -> None:
    for run_id in ("not-a-uuid", "00000000-0000-4000-8000-000000000000"):
        answer = client.get("/api/outbox", query_string={"run_id": run_id}, headers=ADMIN)
        assert answer.json == {"messages": []}


def test_the_outbox_needs_a_key(client: FlaskClient) -> None:
    assert client.get("/api/outbox").status_code == 401
    assert client.get("/api/outbox", query_string={"limit": 0}, headers=READ).status_code == 422
