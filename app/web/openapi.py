"""The OpenAPI 3.1 document, generated from the endpoints' own declarations (app/web/api.py).

As strict as the server, because it is made from what the server checks with: the pydantic
models of bodies (validated strict), queries and answers; the path ids' patterns (PATH_IDS);
the registered node types; and every error answer an endpoint can give, with the `Error` body
(app/web/errors.py). Schemathesis holds the running app to it (tests/integration).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.drivers import driver_types
from app.web.api import ENDPOINTS, MAX_ID_LENGTH, PATH_IDS, Endpoint, without_null
from app.web.errors import Error

REF_TEMPLATE = "#/components/schemas/{model}"

#: Operation ids are the view functions' names in camelCase (`create_agent` -> `createAgent`),
#: except where a view's name says too little for a generated client's method.
OPERATION_IDS: dict[str, str] = {
    "ops.healthz": "getLiveness",
    "ops.readyz": "getReadiness",
    "ops.openapi": "getOpenApiDocument",
    "metrics.prometheus_metrics": "getMetrics",
    "conversations.process_status": "getMessageReply",
    "conversations.get_memory": "getAgentMemory",
    "conversations.delete_memory": "deleteAgentMemory",
    "deliveries.workflow_deliveries": "listWorkflowDeliveries",
    "mcp.serve_mcp": "postMcp",
    "mcp.mcp_get": "getMcp",
    "mcp.mcp_delete": "deleteMcp",
    "outbox.outbox": "listOutboxMessages",
    "runs.workflow_status": "getWorkflowStatus",
    "triggers.webhook_trigger": "fireWebhook",
    "triggers.webhook_trigger_seed": "fireWebhookSeed",
    "triggers.execute": "executeWorkflow",
    "workflows.new_trigger_token": "rotateTriggerToken",
    "workflows.change_status": "setWorkflowStatus",
    "workflows.list_versions": "listWorkflowVersions",
}

#: What each error status means here (docs/api.md#errors has every code).
ERROR_MEANINGS: dict[int, str] = {
    400: "Malformed: the body is not UTF-8 JSON with finite numbers (`malformed_json`), a form"
    " or text body is not in its charset, or an Idempotency-Key header is empty or too long",
    401: "No valid API key (`WWW-Authenticate: Bearer`), or a webhook whose signature does"
    " not hold",
    403: "The key's scope does not allow this, or the workflow takes no webhooks",
    404: "Nothing with this id (an id that breaks its pattern names nothing either)",
    405: "The path does not take this method (`Allow` lists those it takes)",
    409: "The current state does not allow it: the id exists, the workflow is paused, the run"
    " has finished",
    413: "The body is over DUALMCP_MAX_BODY_BYTES",
    415: "The body is not application/json",
    422: "Invalid fields or text that cannot be stored; `details.problems` lists each problem"
    " with its code and path",
    429: "Too many refused deliveries from this sender or to this workflow; `Retry-After`",
    502: "The agent's LLM call failed",
    503: "The database, the broker or a provider is unavailable, or the queue is full;"
    " `Retry-After`",
}


def build_document(version: str) -> dict[str, Any]:
    models = _models()
    keyed, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template=REF_TEMPLATE
    )
    refs = {model: keyed[(model, "validation")] for model in models}
    schemas: dict[str, Any] = definitions.get("$defs", {})
    _node_types_as_enum(schemas)
    paths: dict[str, dict[str, Any]] = {}
    for point in ENDPOINTS:
        if not is_operation(point):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-zA-Z_]+)>", r"{\1}", point.rule)
        paths.setdefault(path, {})[point.method.lower()] = _operation(point, path, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Dual MCP",
            "version": version,
            "description": "Trigger-driven workflows and LLM agents. Every error answer is"
            ' `{"error": {"code", "message", "details"}}` (the `Error` schema).',
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer"},
                "webhookSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "webhook-signature",
                    "description": "Standard Webhooks; github, stripe, slack, twilio and token"
                    " schemes per trigger (docs/api.md#webhook-triggers)",
                },
            },
        },
    }


def is_operation(point: Endpoint) -> bool:
    """False for a route declared only to answer 405 (with its own `Allow`): a method the path
    does not take is no operation, whatever answers it."""
    return set(point.responses) != {405}


def operation_id(point: Endpoint) -> str:
    """`createAgent` for the view `agents.create_agent`, unless OPERATION_IDS renames it."""
    if point.view in OPERATION_IDS:
        return OPERATION_IDS[point.view]
    first, *rest = point.view.rpartition(".")[2].split("_")
    return first + "".join(word.capitalize() for word in rest)


def _models() -> list[type[BaseModel]]:
    found: dict[type[BaseModel], None] = {Error: None}
    for point in ENDPOINTS:
        for model in (point.body, *point.responses.values()):
            if model is not None:
                found[model] = None
    return list(found)


def _node_types_as_enum(schemas: dict[str, Any]) -> None:
    """A node's `type` is one of the registered drivers' (an unknown one is a 422 at save):
    the registry is read when the document is made, so entry-point drivers are listed too."""
    node = schemas.get("NodeDefinition")
    if node is not None:
        node["properties"]["type"] = {"type": "string", "enum": driver_types(), "title": "Type"}


def _operation(point: Endpoint, path: str, refs: dict[type[BaseModel], Any]) -> dict[str, Any]:
    responses = {
        str(status): _response(model, refs)
        for status, model in point.responses.items()
        if status < 400 or model
    }
    if not point.responses:
        responses["200"] = {"description": "OK"}
    for status in point.errors:
        responses.setdefault(str(status), _error_response(status, refs))
    operation: dict[str, Any] = {
        "summary": point.summary,
        "operationId": operation_id(point),
        "tags": [point.tag],
        "responses": dict(sorted(responses.items())),
    }
    if point.auth in ("admin", "invoke", "read"):
        operation["security"] = [{"apiKey": []}]
        operation["description"] = f"Needs an API key with the {point.auth} scope."
    elif point.auth == "signature":
        operation["security"] = [{"webhookSignature": []}]
        operation["description"] = (
            "Authenticated by the trigger's signature scheme, not an API key: an unsigned or"
            " badly signed request is a 401."
        )
    parameters = [_path_parameter(name) for name in re.findall(r"{([a-zA-Z_]+)}", path)]
    if point.query is not None:
        schema = point.query.model_json_schema()
        required = set(schema.get("required", []))
        parameters += [
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": without_null(prop),
            }
            for name, prop in schema.get("properties", {}).items()
        ]
    if parameters:
        operation["parameters"] = parameters
    if point.body is not None:
        operation["requestBody"] = {
            "required": point.body_required,
            "content": {"application/json": {"schema": refs[point.body]}},
        }
    elif point.raw_body is not None:
        operation["requestBody"] = {"required": True, "content": point.raw_body}
    return operation


def _path_parameter(name: str) -> dict[str, Any]:
    """A path id with the pattern every stored one matches (app/web/api.py PATH_IDS)."""
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if name in PATH_IDS:
        noun, pattern = PATH_IDS[name]
        schema |= {"maxLength": MAX_ID_LENGTH, "pattern": pattern}
        return {
            "name": name,
            "in": "path",
            "required": True,
            "schema": schema,
            "description": f"the {noun}'s id",
        }
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _response(model: type[BaseModel] | None, refs: dict[type[BaseModel], Any]) -> dict[str, Any]:
    if model is None:
        return {"description": "No body"}
    # A model may name another media type (app/web/schemas.py RunEventStream: SSE).
    media_type = getattr(model, "media_type", "application/json")
    return {
        "description": (model.__doc__ or model.__name__).strip().splitlines()[0],
        "content": {media_type: {"schema": refs[model]}},
    }


def _error_response(status: int, refs: dict[type[BaseModel], Any]) -> dict[str, Any]:
    return {
        "description": ERROR_MEANINGS.get(status, "An error"),
        "content": {"application/json": {"schema": refs[Error]}},
    }
