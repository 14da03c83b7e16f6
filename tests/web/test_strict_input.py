"""The server is as strict as its OpenAPI document: a JSON body's types are checked strictly
(`true` is no number, `1` no boolean), and a wrong method names the methods a path takes."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.web.conftest import ADMIN
from tests.web.factories import two_step, unique_id


def problem_paths(answer: Any) -> list[str]:
    return [problem["path"] for problem in answer.json["error"]["details"]["problems"]]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"agent_name": "A", "llm_config": {"max_tokens": True}}, "llm_config.max_tokens"),
        ({"agent_name": "A", "llm_config": {"temperature": False}}, "llm_config.temperature"),
        ({"agent_name": "A", "expose_as_tool": 1}, "expose_as_tool"),
        ({"agent_name": "A", "expose_as_tool": "true"}, "expose_as_tool"),
    ],
)
def test_a_body_field_of_another_json_type_is_a_422_naming_it(
    client: FlaskClient, body: dict[str, Any], path: str
) -> None:
    answer = client.post("/api/agents", json=body, headers=ADMIN)

    assert answer.status_code == 422
    assert problem_paths(answer) == [path]


def test_a_boolean_is_no_number_of_attempts_in_a_definition(client: FlaskClient) -> None:
    definition = two_step(unique_id("strict"))
    definition["nodes"][0]["retry"] = {"max_attempts": True}

    answer = client.post("/api/workflows", json=definition, headers=ADMIN)

    assert answer.status_code == 422
    assert problem_paths(answer) == ["nodes[0].retry.max_attempts"]


def test_a_definition_with_the_right_types_is_saved(client: FlaskClient) -> None:
    definition = two_step(unique_id("strict"))
    definition["nodes"][0]["retry"] = {"max_attempts": 2, "backoff_s": 1, "jitter": False}

    assert client.post("/api/workflows", json=definition, headers=ADMIN).status_code == 201


def test_a_query_number_is_still_read_from_its_text(client: FlaskClient) -> None:
    assert client.get("/api/runs?limit=5", headers=ADMIN).status_code == 200
    assert client.get("/api/runs?limit=true", headers=ADMIN).status_code == 422


def test_a_wrong_method_is_a_405_naming_the_allowed_ones(client: FlaskClient) -> None:
    answer = client.put("/api/agents", headers=ADMIN)

    assert answer.status_code == 405
    assert {"GET", "POST"} <= {m.strip() for m in answer.headers["Allow"].split(",")}
    assert answer.json["error"]["code"] == "method_not_allowed"
