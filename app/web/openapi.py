"""The OpenAPI 3.1 document, generated from the endpoints' own pydantic models (app/web/api.py)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.web.api import ENDPOINTS, Endpoint

REF_TEMPLATE = "#/components/schemas/{model}"


def build_document(version: str) -> dict[str, Any]:
    models = _models()
    keyed, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template=REF_TEMPLATE
    )
    refs = {model: keyed[(model, "validation")] for model in models}
    paths: dict[str, dict[str, Any]] = {}
    for point in ENDPOINTS:
        path = re.sub(r"<(?:[a-z]+:)?([a-zA-Z_]+)>", r"{\1}", point.rule)
        paths.setdefault(path, {})[point.method.lower()] = _operation(point, path, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Dual MCP", "version": version},
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer"},
                "webhookSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "webhook-signature",
                    "description": "Standard Webhooks; github and stripe presets per trigger",
                },
            },
        },
    }


def _models() -> list[type[BaseModel]]:
    found: dict[type[BaseModel], None] = {}
    for point in ENDPOINTS:
        for model in (point.body, point.query, *point.responses.values()):
            if model is not None:
                found[model] = None
    return list(found)


def _operation(point: Endpoint, path: str, refs: dict[type[BaseModel], Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": point.summary,
        "operationId": f"{point.method.lower()}_{re.sub(r'[^a-zA-Z0-9]+', '_', path).strip('_')}",
        "tags": [point.tag],
        "responses": {
            str(status): _response(model, refs) for status, model in point.responses.items()
        }
        or {"200": {"description": "OK"}},
    }
    if point.auth in ("admin", "invoke", "read"):
        operation["security"] = [{"apiKey": []}]
        operation["description"] = f"Needs an API key with the {point.auth} scope."
    elif point.auth == "signature":
        operation["security"] = [{"webhookSignature": []}]
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{([a-zA-Z_]+)}", path)
    ]
    if point.query is not None:
        schema = point.query.model_json_schema()
        required = set(schema.get("required", []))
        parameters += [
            {"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in schema.get("properties", {}).items()
        ]
    if parameters:
        operation["parameters"] = parameters
    if point.body is not None:
        operation["requestBody"] = {
            "required": point.body_required,
            "content": {"application/json": {"schema": refs[point.body]}},
        }
    return operation


def _response(model: type[BaseModel] | None, refs: dict[type[BaseModel], Any]) -> dict[str, Any]:
    if model is None:
        return {"description": "No body"}
    return {
        "description": (model.__doc__ or model.__name__).strip().splitlines()[0],
        "content": {"application/json": {"schema": refs[model]}},
    }
