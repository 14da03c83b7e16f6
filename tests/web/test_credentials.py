"""Credentials over HTTP: write-only values, names listed, admin only to change."""

from __future__ import annotations

import dataclasses

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from app.web import create_app
from tests.web.conftest import ADMIN, READ
from tests.web.factories import save, two_step

SECRET = "sk-live-do-not-show-me"


def workflow(sessions: sessionmaker[Session]) -> str:
    return save(sessions, two_step())


def test_a_stored_value_is_never_answered(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = workflow(web_sessions)
    url = f"/api/workflows/{workflow_id}/credentials/crm-token"
    created = client.put(url, json={"value": SECRET}, headers=ADMIN)
    replaced = client.put(url, json={"value": {"token": SECRET}}, headers=ADMIN)
    listed = client.get(f"/api/workflows/{workflow_id}/credentials", headers=READ)
    definition = client.get(f"/api/workflows/{workflow_id}", headers=ADMIN)

    assert (created.status_code, replaced.status_code, listed.status_code) == (201, 200, 200)
    assert created.json is not None
    assert created.json["name"] == "crm-token"
    assert (created.json["owner"], created.json["owner_id"]) == ("workflow", workflow_id)
    assert [item["name"] for item in listed.json["credentials"]] == ["crm-token"]
    for answer in (created, replaced, listed, definition):
        assert SECRET not in answer.get_data(as_text=True)


def test_delete_then_gone(client: FlaskClient, web_sessions: sessionmaker[Session]) -> None:
    workflow_id = workflow(web_sessions)
    url = f"/api/workflows/{workflow_id}/credentials/smtp"
    client.put(url, json={"value": "smtp://u:p@mail.example.com"}, headers=ADMIN)
    assert client.delete(url, headers=ADMIN).status_code == 204
    again = client.delete(url, headers=ADMIN)
    assert again.status_code == 404
    assert again.json["error"]["code"] == "not_found"
    assert client.get(f"/api/workflows/{workflow_id}/credentials", headers=READ).json == {
        "credentials": []
    }


def test_agents_have_credentials_too(client: FlaskClient) -> None:
    agent = {"agent_id": "keeper", "agent_name": "Keeper", "llm_config": {"provider": "echo"}}
    assert client.post("/api/agents", json=agent, headers=ADMIN).status_code == 201
    put = client.put("/api/agents/keeper/credentials/openai", json={"value": SECRET}, headers=ADMIN)
    listed = client.get("/api/agents/keeper/credentials", headers=READ)
    assert put.status_code == 201
    assert put.json["owner"] == "agent"
    assert [item["name"] for item in listed.json["credentials"]] == ["openai"]


def test_read_keys_may_list_but_not_change(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = workflow(web_sessions)
    url = f"/api/workflows/{workflow_id}/credentials/crm"
    assert client.put(url, json={"value": SECRET}, headers=READ).status_code == 403
    assert client.delete(url, headers=READ).status_code == 403
    assert client.put(url, json={"value": SECRET}).status_code == 401


def test_an_unknown_owner_is_a_404(client: FlaskClient) -> None:
    answer = client.put(
        "/api/workflows/nope/credentials/crm", json={"value": SECRET}, headers=ADMIN
    )
    assert answer.status_code == 404
    assert client.get("/api/agents/nope/credentials", headers=READ).status_code == 404


def test_invalid_names_and_values_are_422_without_echoing_the_value(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = workflow(web_sessions)
    bad_name = client.put(
        f"/api/workflows/{workflow_id}/credentials/-bad name", json={"value": SECRET}, headers=ADMIN
    )
    too_long = client.put(
        f"/api/workflows/{workflow_id}/credentials/crm",
        json={"value": SECRET * 1000},
        headers=ADMIN,
    )
    not_strings = client.put(
        f"/api/workflows/{workflow_id}/credentials/crm",
        json={"value": {"token": 42}},
        headers=ADMIN,
    )
    assert [a.status_code for a in (bad_name, too_long, not_strings)] == [422, 422, 422]
    assert bad_name.json["error"]["details"]["problems"][0]["path"] == "name"
    assert SECRET not in too_long.get_data(as_text=True)


def test_without_an_encryption_key_nothing_is_stored(
    app: Flask, web_sessions: sessionmaker[Session]
) -> None:
    context = app.extensions["dualmcp"]
    keyless = dataclasses.replace(
        context, settings=context.settings.model_copy(update={"encryption_key": None})
    )
    client = create_app({"TESTING": True}, context=keyless).test_client()
    workflow_id = workflow(web_sessions)
    answer = client.put(
        f"/api/workflows/{workflow_id}/credentials/crm", json={"value": SECRET}, headers=ADMIN
    )
    assert answer.status_code == 503
    assert answer.json["error"]["code"] == "encryption_not_configured"
    assert "DUALMCP_ENCRYPTION_KEY is not set" in answer.json["error"]["message"]
