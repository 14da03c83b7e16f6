"""Workflow definitions over HTTP: create, validate, version, pause, list."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.web.conftest import ADMIN, READ
from tests.web.factories import two_step, unique_id

SECRET = "whsec_c2VjcmV0LWZvci10ZXN0cw=="


def create(client: FlaskClient, definition: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/api/workflows", json=definition, headers=ADMIN)
    assert answer.status_code == 201, answer.json
    return dict(answer.json or {})


def problems(answer: Any) -> list[tuple[str, str]]:
    return [(p["code"], p["path"]) for p in answer.json["error"]["details"]["problems"]]


def test_create_answers_201_with_the_stored_workflow(client: FlaskClient) -> None:
    definition = two_step()

    answer = client.post("/api/workflows", json=definition, headers=ADMIN)

    assert answer.status_code == 201
    assert answer.headers["Location"] == f"/api/workflows/{definition['workflow_id']}"
    body = answer.json
    assert body is not None
    assert set(body) == {
        "workflow_id",
        "version",
        "status",
        "name",
        "agent_id",
        "definition",
        "created_at",
        "updated_at",
    }
    assert (body["workflow_id"], body["version"], body["status"], body["name"]) == (
        definition["workflow_id"],
        1,
        "active",
        "Two steps",
    )
    assert [node["id"] for node in body["definition"]["nodes"]] == ["first", "last"]


def test_a_definition_with_several_problems_lists_each_with_code_and_path(
    client: FlaskClient,
) -> None:
    definition = {
        "workflow_id": unique_id("broken"),
        "nodes": [
            {"id": "a", "type": "transform", "params": {"values": {}}, "next": "missing"},
            {"id": "a", "type": "no_such_type"},
            {"id": "c", "type": "transform", "params": {}},
            {
                "id": "d",
                "type": "transform",
                "params": {"values": {}},
                "retry": {"max_attempts": 0},
            },
        ],
    }

    answer = client.post("/api/workflows", json=definition, headers=ADMIN)

    assert answer.status_code == 422
    assert answer.json is not None
    assert answer.json["error"]["code"] == "invalid_workflow"
    found = problems(answer)
    assert ("unknown_reference", "nodes[0].next") in found
    assert ("duplicate_id", "nodes[1].id") in found
    assert ("unknown_type", "nodes[1].type") in found
    assert any(path.startswith("nodes[2].params") for _, path in found)
    assert any(path == "nodes[3].retry.max_attempts" for _, path in found)
    assert all(p["message"] for p in answer.json["error"]["details"]["problems"])


def test_an_unknown_agent_is_a_problem_at_agent_id(client: FlaskClient) -> None:
    answer = client.post("/api/workflows", json=two_step() | {"agent_id": "nobody"}, headers=ADMIN)

    assert answer.status_code == 422
    assert problems(answer) == [("unknown_agent", "agent_id")]


def test_a_workflow_may_name_an_existing_agent(client: FlaskClient) -> None:
    client.post("/api/agents", json={"agent_id": "helper", "agent_name": "Helper"}, headers=ADMIN)

    body = create(client, two_step() | {"agent_id": "helper"})

    assert body["agent_id"] == "helper"


def test_a_body_that_is_not_an_object_is_a_422(client: FlaskClient) -> None:
    answer = client.post("/api/workflows", json=[1, 2], headers=ADMIN)

    assert answer.status_code == 422
    assert problems(answer) == [("invalid_schema", "")]


def test_creating_an_existing_workflow_is_a_409(client: FlaskClient) -> None:
    definition = two_step()
    create(client, definition)

    answer = client.post("/api/workflows", json=definition, headers=ADMIN)

    assert answer.status_code == 409
    assert client.get(f"/api/workflows/{definition['workflow_id']}", headers=READ).json == (
        client.get(f"/api/workflows/{definition['workflow_id']}?version=1", headers=READ).json
    )


def test_put_stores_a_new_version(client: FlaskClient) -> None:
    definition = two_step()
    create(client, definition)

    answer = client.put(
        f"/api/workflows/{definition['workflow_id']}",
        json=two_step(definition["workflow_id"], value="two"),
        headers=ADMIN,
    )

    assert answer.status_code == 200
    assert answer.json is not None
    assert answer.json["version"] == 2
    assert answer.json["definition"]["nodes"][0]["params"] == {"values": {"v": "two"}}


def test_get_with_a_version_returns_the_old_definition(client: FlaskClient) -> None:
    definition = two_step()
    workflow_id = definition["workflow_id"]
    create(client, definition)
    client.put(
        f"/api/workflows/{workflow_id}", json=two_step(workflow_id, value="two"), headers=ADMIN
    )

    old = client.get(f"/api/workflows/{workflow_id}?version=1", headers=READ).json
    current = client.get(f"/api/workflows/{workflow_id}", headers=READ).json

    assert old is not None and current is not None
    assert (old["version"], old["definition"]["nodes"][0]["params"]) == (
        1,
        {"values": {"v": "one"}},
    )
    assert (current["version"], current["definition"]["nodes"][0]["params"]) == (
        2,
        {"values": {"v": "two"}},
    )


def test_put_creates_a_missing_workflow_with_201(client: FlaskClient) -> None:
    workflow_id = unique_id("fresh")

    answer = client.put(f"/api/workflows/{workflow_id}", json=two_step(workflow_id), headers=ADMIN)

    assert answer.status_code == 201
    assert answer.json is not None
    assert answer.json["version"] == 1


def test_put_fills_in_a_missing_workflow_id(client: FlaskClient) -> None:
    workflow_id = unique_id("implicit")
    definition = two_step()
    del definition["workflow_id"]

    answer = client.put(f"/api/workflows/{workflow_id}", json=definition, headers=ADMIN)

    assert answer.status_code == 201
    assert answer.json is not None
    assert answer.json["definition"]["workflow_id"] == workflow_id


def test_put_with_another_workflow_id_is_a_422_naming_it(client: FlaskClient) -> None:
    answer = client.put(f"/api/workflows/{unique_id('path')}", json=two_step(), headers=ADMIN)

    assert answer.status_code == 422
    assert problems(answer) == [("workflow_id_mismatch", "workflow_id")]


def test_an_invalid_put_stores_no_version(client: FlaskClient) -> None:
    definition = two_step()
    workflow_id = definition["workflow_id"]
    create(client, definition)

    answer = client.put(
        f"/api/workflows/{workflow_id}",
        json={"workflow_id": workflow_id, "nodes": []},
        headers=ADMIN,
    )

    assert answer.status_code == 422
    current = client.get(f"/api/workflows/{workflow_id}", headers=READ).json
    assert current is not None
    assert current["version"] == 1


def test_an_unknown_version_is_a_404(client: FlaskClient) -> None:
    definition = create(client, two_step())

    answer = client.get(f"/api/workflows/{definition['workflow_id']}?version=9", headers=READ)

    assert answer.status_code == 404


@pytest.mark.parametrize("version", ["0", "two"])
def test_an_invalid_version_is_a_422_naming_it(client: FlaskClient, version: str) -> None:
    definition = create(client, two_step())

    answer = client.get(
        f"/api/workflows/{definition['workflow_id']}?version={version}", headers=READ
    )

    assert answer.status_code == 422
    assert [path for _, path in problems(answer)] == ["version"]


def test_an_unknown_workflow_is_a_404(client: FlaskClient) -> None:
    for path in ("/api/workflows/nope", "/api/workflows/nope/versions"):
        answer = client.get(path, headers=READ)
        assert answer.status_code == 404, path
        assert answer.json is not None
        assert answer.json["error"]["code"] == "not_found"


def test_versions_are_listed_newest_first(client: FlaskClient) -> None:
    workflow_id = create(client, two_step())["workflow_id"]
    client.put(f"/api/workflows/{workflow_id}", json=two_step(workflow_id), headers=ADMIN)

    answer = client.get(f"/api/workflows/{workflow_id}/versions", headers=READ)

    assert answer.status_code == 200
    assert answer.json is not None
    assert answer.json["workflow_id"] == workflow_id
    assert [v["version"] for v in answer.json["versions"]] == [2, 1]


def test_the_list_shows_each_workflow_at_its_current_version(client: FlaskClient) -> None:
    first = create(client, two_step())["workflow_id"]
    second = create(client, two_step())["workflow_id"]
    client.put(f"/api/workflows/{second}", json=two_step(second), headers=ADMIN)

    answer = client.get("/api/workflows", headers=READ)

    assert answer.status_code == 200
    assert answer.json is not None
    listed = {w["workflow_id"]: w["version"] for w in answer.json["workflows"]}
    assert listed == {first: 1, second: 2}
    assert all("definition" not in w for w in answer.json["workflows"])


def test_a_workflow_is_paused_and_activated(client: FlaskClient) -> None:
    workflow_id = create(client, two_step())["workflow_id"]
    path = f"/api/workflows/{workflow_id}/status"

    paused = client.patch(path, json={"status": "paused"}, headers=ADMIN)
    active = client.patch(path, json={"status": "active"}, headers=ADMIN)

    assert paused.status_code == active.status_code == 200
    assert paused.json is not None and active.json is not None
    assert (paused.json["status"], active.json["status"]) == ("paused", "active")
    assert active.json["version"] == 1


def test_an_unknown_status_is_a_422(client: FlaskClient) -> None:
    workflow_id = create(client, two_step())["workflow_id"]

    answer = client.patch(
        f"/api/workflows/{workflow_id}/status", json={"status": "deleted"}, headers=ADMIN
    )

    assert answer.status_code == 422
    assert [path for _, path in problems(answer)] == ["status"]


def test_a_read_key_sees_trigger_secrets_masked(client: FlaskClient) -> None:
    definition = two_step() | {"trigger": {"type": "webhook", "secrets": [SECRET]}}
    create(client, definition)

    shown = client.get(f"/api/workflows/{definition['workflow_id']}", headers=READ).json

    assert shown is not None
    assert shown["definition"]["trigger"]["secrets"] == ["***"]
    assert SECRET not in str(shown)


def test_an_admin_key_sees_trigger_secrets(client: FlaskClient) -> None:
    definition = two_step() | {"trigger": {"type": "webhook", "secrets": [SECRET]}}
    create(client, definition)

    shown = client.get(f"/api/workflows/{definition['workflow_id']}", headers=ADMIN).json

    assert shown is not None
    assert shown["definition"]["trigger"]["secrets"] == [SECRET]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/workflows"),
        ("put", "/api/workflows/any"),
        ("patch", "/api/workflows/any/status"),
    ],
)
def test_a_read_key_cannot_change_workflows(client: FlaskClient, method: str, path: str) -> None:
    answer = getattr(client, method)(path, json=two_step("any"), headers=READ)

    assert answer.status_code == 403
