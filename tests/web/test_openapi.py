"""GET /api/openapi.json: a valid OpenAPI 3.1 document, generated from the declared endpoints."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from app.web.api import ENDPOINTS


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    answer = client.get("/api/openapi.json")
    assert answer.status_code == 200
    assert answer.json is not None
    return dict(answer.json)


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_the_document_lists_every_route_the_app_serves(
    app: Flask, document: dict[str, Any]
) -> None:
    served = {
        (re.sub(r"<(?:[a-z]+:)?([a-zA-Z_]+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    documented = {(path, method) for path, item in document["paths"].items() for method in item}

    assert served == documented


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/agent/create", "post"),
        ("/api/agents", "post"),
        ("/api/agents", "get"),
        ("/api/agents/{agent_id}", "patch"),
        ("/api/agents/{agent_id}", "delete"),
        ("/api/workflows", "post"),
        ("/api/workflows", "get"),
        ("/api/workflows/{workflow_id}", "get"),
        ("/api/workflows/{workflow_id}", "put"),
        ("/api/workflows/{workflow_id}/versions", "get"),
        ("/api/workflows/{workflow_id}/status", "patch"),
        ("/api/workflow/status", "get"),
        ("/api/runs", "get"),
        ("/api/runs/{run_id}", "get"),
        ("/api/runs/{run_id}/cancel", "post"),
        ("/api/runs/{run_id}/retry", "post"),
    ],
)
def test_the_management_endpoints_are_documented(
    document: dict[str, Any], path: str, method: str
) -> None:
    operation = document["paths"][path][method]

    assert operation["summary"]
    assert operation["security"] == [{"apiKey": []}]
    assert operation["responses"]


def test_the_workflow_body_is_described_by_the_definition_schema(
    document: dict[str, Any],
) -> None:
    body = document["paths"]["/api/workflows"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]

    assert {"workflow_id", "nodes", "trigger"} <= set(schema["properties"])


def test_the_retry_body_may_be_left_out(document: dict[str, Any]) -> None:
    assert document["paths"]["/api/runs/{run_id}/retry"]["post"]["requestBody"]["required"] is False


def test_the_list_of_runs_documents_its_query(document: dict[str, Any]) -> None:
    parameters = document["paths"]["/api/runs"]["get"]["parameters"]

    assert {p["name"] for p in parameters} == {"workflow_id", "status", "limit", "cursor"}
    assert all(p["in"] == "query" and not p["required"] for p in parameters)


def test_every_declared_endpoint_is_registered_once() -> None:
    keys = [(point.rule, point.method) for point in ENDPOINTS]

    assert len(keys) == len(set(keys))
