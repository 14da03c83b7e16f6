"""Declaring an endpoint once: its route, auth, request and response schemas.

`endpoint(...)` registers a Flask view on a blueprint AND records the same pydantic models for
the OpenAPI document (app/web/openapi.py), so the document cannot drift from the code. The
wrapper checks the API key, parses and validates the body and query, and hands the view
validated models.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from flask import Blueprint, request
from pydantic import BaseModel, ValidationError

from app.web.auth import require_scope
from app.web.errors import ApiError

#: Deeper JSON than this is refused before validation (a cheap guard against stack exhaustion).
MAX_JSON_DEPTH = 32

Auth = Literal["admin", "invoke", "read", "signature", "none"]
View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class Endpoint:
    """What the OpenAPI document says about one route."""

    rule: str
    method: str
    summary: str
    auth: Auth
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    tag: str = ""
    #: False when an empty body stands for `{}` (every field has a default).
    body_required: bool = True


#: Every endpoint declared so far, in declaration order.
ENDPOINTS: list[Endpoint] = []


def endpoint(
    bp: Blueprint,
    rule: str,
    *,
    method: str = "GET",
    summary: str,
    auth: Auth = "read",
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    responses: dict[int, type[BaseModel] | None] | None = None,
    body_optional: bool = False,
) -> Callable[[View], View]:
    """Register `view` on `bp`; the view receives `body=` and `query=` models when declared.

    With `body_optional`, a request without a body is read as `{}` (e.g. `curl -X POST`).
    """

    def decorator(view: View) -> View:
        full_rule = (bp.url_prefix or "") + rule
        ENDPOINTS.append(
            Endpoint(
                full_rule,
                method,
                summary,
                auth,
                body,
                query,
                responses or {},
                bp.name,
                body_required=not body_optional,
            )
        )

        @functools.wraps(view)
        def wrapper(**kwargs: Any) -> Any:
            if auth in ("admin", "invoke", "read"):
                require_scope(auth)
            if body is not None:
                empty = body_optional and not request.get_data(cache=True)
                kwargs["body"] = validate(body, {}) if empty else parse_body(body)
            if query is not None:
                kwargs["query"] = parse_query(query)
            return view(**kwargs)

        bp.add_url_rule(rule, view_func=wrapper, methods=[method])
        return view

    return decorator


def read_json() -> Any:
    """The request's JSON body: 415 unless JSON, 400 when malformed or nested too deep."""
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "the body must be application/json")
    raw = request.get_data(cache=True)  # MAX_CONTENT_LENGTH makes this a 413 when too large
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ApiError(400, "malformed_json", "the JSON body is nested too deeply") from None
    except ValueError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise ApiError(
            400, "malformed_json", f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels"
        )
    return data


def parse_body(model: type[BaseModel]) -> BaseModel:
    return validate(model, read_json())


def parse_query(model: type[BaseModel]) -> BaseModel:
    return validate(model, request.args.to_dict())


def validate(model: type[BaseModel], data: Any) -> BaseModel:
    """A 422 listing every problem, each with the path of the field it concerns."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {
                "code": error["type"],
                "path": ".".join(str(part) for part in error["loc"]),
                "message": error["msg"],
            }
            for error in exc.errors(include_input=False, include_url=False)
        ]
        fields = ", ".join(sorted({problem["path"] or "(body)" for problem in problems}))
        raise ApiError(
            422, "validation_failed", f"invalid fields: {fields}", {"problems": problems}
        ) from None


def _depth(value: Any) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if level and depth > MAX_JSON_DEPTH:
            return depth  # values remain below the limit's level: stop counting
    return depth - 1 if depth else 0
