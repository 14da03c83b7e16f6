"""GET /api/openapi.json: a valid OpenAPI 3.1 document, generated from the declared endpoints,
that says what the server does: its errors, its ids, its patterns, its types."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from app.agents.schemas import AGENT_ID_PATTERN
from app.credentials import NAME_PATTERN as CREDENTIAL_NAME_PATTERN
from app.drivers import driver_types
from app.engine.schema import WORKFLOW_ID_PATTERN
from app.web.api import ENDPOINTS
from app.web.openapi import OPERATION_IDS, is_operation
from tests.web.conftest import ADMIN

#: Error answers in another format: readiness (its checks), and the MCP SDK's JSON-RPC errors.
NOT_OURS = {("/readyz", "503"), ("/mcp", "400")}
#: HTTP for people, not API: the pages at /ui (and / that leads there) and the docs page.
PAGES = re.compile(r"^/($|ui\b|api/docs\b)")


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    answer = client.get("/api/openapi.json")
    assert answer.status_code == 200
    assert answer.json is not None
    return dict(answer.json)


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def component(document: dict[str, Any], ref: str) -> dict[str, Any]:
    return dict(document["components"]["schemas"][ref.rsplit("/", 1)[-1]])


def error_schema_validator(document: dict[str, Any]) -> Draft202012Validator:
    """Validates a body against the document's `Error`, its references resolved."""
    schema = {"$ref": "#/components/schemas/Error", "components": document["components"]}
    return Draft202012Validator(schema)


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_the_document_lists_every_api_route_the_app_serves(
    app: Flask, document: dict[str, Any]
) -> None:
    only_405 = {(p.rule, p.method) for p in ENDPOINTS if not is_operation(p)}
    served = {
        (re.sub(r"<(?:[a-z]+:)?([a-zA-Z_]+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if not rule.endpoint.endswith("static") and not PAGES.match(rule.rule)
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS") and (rule.rule, method) not in only_405
    }
    documented = {(path, method) for path, item in document["paths"].items() for method in item}

    assert served == documented


def test_the_docs_page_is_not_an_operation(document: dict[str, Any]) -> None:
    assert not [path for path in document["paths"] if PAGES.match(path)]


def test_a_method_answered_only_with_405_is_no_operation(
    client: FlaskClient, document: dict[str, Any]
) -> None:
    answer = client.get("/mcp")

    assert answer.status_code == 405
    assert answer.headers["Allow"] == "POST"
    assert set(document["paths"]["/mcp"]) == {"post"}


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
    schema = component(document, body["content"]["application/json"]["schema"]["$ref"])

    assert {"workflow_id", "nodes", "trigger"} <= set(schema["properties"])


def test_the_retry_body_may_be_left_out(document: dict[str, Any]) -> None:
    assert document["paths"]["/api/runs/{run_id}/retry"]["post"]["requestBody"]["required"] is False


def test_the_list_of_runs_documents_its_query(document: dict[str, Any]) -> None:
    parameters = document["paths"]["/api/runs"]["get"]["parameters"]

    assert {"workflow_id", "status", "limit", "cursor"} <= {p["name"] for p in parameters}
    assert all(p["in"] == "query" and not p["required"] for p in parameters)


def test_a_query_value_is_never_offered_as_null(document: dict[str, Any]) -> None:
    query = [
        parameter
        for _, _, operation in operations(document)
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "query"
    ]

    assert query
    assert all("null" not in str(parameter["schema"]) for parameter in query)


def test_every_declared_endpoint_is_registered_once() -> None:
    keys = [(point.rule, point.method) for point in ENDPOINTS]

    assert len(keys) == len(set(keys))


def test_operation_ids_are_unique_camel_case_names(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(document)]

    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z0-9]*)*", op_id) for op_id in ids), ids


@pytest.mark.parametrize(
    ("path", "method", "operation_id"),
    [
        ("/api/agents", "post", "createAgent"),
        ("/api/agents/{agent_id}", "get", "getAgent"),
        ("/api/runs/{run_id}", "get", "getRun"),
        ("/api/runs", "get", "listRuns"),
        ("/api/workflow/execute", "post", "executeWorkflow"),
        ("/api/workflows/{workflow_id}/status", "patch", "setWorkflowStatus"),
        ("/healthz", "get", "getLiveness"),
    ],
)
def test_operation_ids_are_what_a_generated_client_calls(
    document: dict[str, Any], path: str, method: str, operation_id: str
) -> None:
    assert document["paths"][path][method]["operationId"] == operation_id


def test_every_renamed_operation_is_a_declared_view() -> None:
    assert set(OPERATION_IDS) <= {point.view for point in ENDPOINTS}


def test_every_error_answer_has_the_error_schema(document: dict[str, Any]) -> None:
    errors = {
        (path, method, status): response
        for path, method, operation in operations(document)
        for status, response in operation["responses"].items()
        if int(status) >= 400 and (path, status) not in NOT_OURS
    }

    assert errors
    for key, response in errors.items():
        schema = response["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}, key


def test_the_error_schema_describes_a_real_error_answer(
    client: FlaskClient, document: dict[str, Any]
) -> None:
    answers = [
        client.get("/api/agents/no-such-agent", headers=ADMIN),
        client.post("/api/agents", json={"agent_name": ""}, headers=ADMIN),
        client.put("/api/agents", headers=ADMIN),
    ]

    assert [answer.status_code for answer in answers] == [404, 422, 405]
    for answer in answers:
        assert not list(error_schema_validator(document).iter_errors(answer.json))


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/api/agents", "post", {"401", "403", "400", "413", "415", "422", "409", "503"}),
        ("/api/agents", "get", {"401", "503"}),
        ("/api/agents/{agent_id}", "get", {"401", "404", "503"}),
        ("/api/workflows/{workflow_id}/credentials/{name}", "put", {"404", "422"}),
        ("/api/workflow/execute", "post", {"401", "403", "404", "409", "422", "503"}),
        ("/api/triggers/webhook/{workflow_id}", "post", {"401", "403", "404", "429", "503"}),
        ("/api/runs", "get", {"401", "422"}),
    ],
)
def test_operations_document_the_errors_they_can_answer(
    document: dict[str, Any], path: str, method: str, statuses: set[str]
) -> None:
    assert statuses <= set(document["paths"][path][method]["responses"])


def test_a_read_operation_documents_no_403_it_cannot_answer(document: dict[str, Any]) -> None:
    assert "403" not in document["paths"]["/api/agents"]["get"]["responses"]


def test_every_timestamp_is_a_date_time(document: dict[str, Any]) -> None:
    times = {
        (name, prop): schema
        for name, model in document["components"]["schemas"].items()
        for prop, schema in model.get("properties", {}).items()
        if prop.endswith("_at")
    }

    assert ("RunOut", "created_at") in times
    for key, schema in times.items():
        options = [(o.get("type"), o.get("format")) for o in schema.get("anyOf", [schema])]
        assert ("string", "date-time") in options, key


@pytest.mark.parametrize(
    ("path", "name", "pattern"),
    [
        ("/api/agents/{agent_id}", "agent_id", AGENT_ID_PATTERN),
        ("/api/workflows/{workflow_id}", "workflow_id", WORKFLOW_ID_PATTERN),
        ("/api/agents/{agent_id}/credentials/{name}", "name", CREDENTIAL_NAME_PATTERN),
    ],
)
def test_path_ids_carry_the_pattern_the_server_checks(
    document: dict[str, Any], path: str, name: str, pattern: str
) -> None:
    item = document["paths"][path]
    for operation in item.values():
        (parameter,) = [p for p in operation["parameters"] if p["name"] == name]
        assert parameter["schema"]["pattern"] == pattern
        assert parameter["schema"]["maxLength"] == 128


def test_node_types_are_the_registered_drivers(document: dict[str, Any]) -> None:
    node = document["components"]["schemas"]["NodeDefinition"]

    assert node["properties"]["type"]["enum"] == driver_types()


def test_a_patch_offers_no_null_the_server_refuses(
    client: FlaskClient, document: dict[str, Any]
) -> None:
    patch = document["paths"]["/api/agents/{agent_id}"]["patch"]["requestBody"]
    schema = component(document, patch["content"]["application/json"]["schema"]["$ref"])
    client.post("/api/agents", json={"agent_id": "a1", "agent_name": "A"}, headers=ADMIN)

    answer = client.patch("/api/agents/a1", json={"llm_config": None}, headers=ADMIN)

    assert "null" not in str(schema["properties"]["llm_config"])
    assert answer.status_code == 422
