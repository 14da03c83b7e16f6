"""Declaring an endpoint once: its route, auth, request and response schemas.

`endpoint(...)` registers a Flask view on a blueprint AND records the same pydantic models for
the OpenAPI document (app/web/openapi.py), so the document cannot drift from the code. The
wrapper checks the API key, parses and validates the body and query, and hands the view
validated models. The error answers it can give follow from the same declaration
(`Endpoint.errors`); a view adds those only it knows (a 409) to `responses`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from flask import Blueprint, request
from pydantic import BaseModel, ValidationError

from app.agents.schemas import AGENT_ID_PATTERN
from app.credentials import NAME_PATTERN as CREDENTIAL_NAME_PATTERN
from app.engine.schema import WORKFLOW_ID_PATTERN
from app.engine.storable_text import has_unstorable_text, unstorable_text_problems
from app.web.auth import require_scope
from app.web.errors import ApiError
from app.web.json_body import invalid_text, parse_json_body

#: Path arguments that name a stored thing: its noun, and the pattern every stored one matches.
#: A value that cannot match (a NUL, a space, 5,000 characters) names nothing: a 404 decided
#: without a database read (issue 13: a NUL in a path reached PostgreSQL and answered 500).
PATH_IDS: dict[str, tuple[str, str]] = {
    "workflow_id": ("workflow", WORKFLOW_ID_PATTERN),
    "agent_id": ("agent", AGENT_ID_PATTERN),
    "name": ("credential", CREDENTIAL_NAME_PATTERN),
}
#: The longest id of any kind (the columns are 128 characters).
MAX_ID_LENGTH = 128

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
    #: The Flask endpoint, `<blueprint>.<view function>`: the operation id is made from it.
    view: str = ""
    #: A body the view reads itself (not validated here), as OpenAPI's `requestBody.content`.
    raw_body: dict[str, Any] | None = None

    @property
    def errors(self) -> list[int]:
        """Every error status this endpoint can answer, each with the `Error` body: those the
        wrapper and the app give (auth, body, query, path ids, a database that is down) and
        those the view declared in `responses` without a model of their own."""
        found = {status for status, model in self.responses.items() if status >= 400 and not model}
        if self.auth in ("admin", "invoke"):
            found |= {401, 403, 503}  # 503: a stored key is looked up in the database
        elif self.auth in ("read", "signature"):
            found |= {401, 503}
        if self.auth == "signature":  # the raw body: JSON, a form or text (webhook_payloads)
            found |= {400, 413, 415, 422}
        if self.body is not None:
            found |= {400, 413, 415, 422}
        if self.query is not None:
            found.add(422)
        arguments = _path_arguments(self.rule)
        created = arguments[-1:] if self.method == "PUT" else []
        if any(name not in created for name in arguments):
            found.add(404)
        if created:
            found.add(422)
        return sorted(found)


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
    raw_body: dict[str, Any] | None = None,
) -> Callable[[View], View]:
    """Register `view` on `bp`; the view receives `body=` and `query=` models when declared.

    With `body_optional`, a request without a body is read as `{}` (e.g. `curl -X POST`).
    `raw_body` documents a body the view reads itself (its media types and their schemas).
    """

    def decorator(view: View) -> View:
        full_rule = (bp.url_prefix or "") + rule
        # A PUT creates what its last path argument names: that one is the view's to judge (422).
        created = _path_arguments(rule)[-1:] if method == "PUT" else []
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
                view=f"{bp.name}.{view.__name__}",
                raw_body=raw_body,
            )
        )

        @functools.wraps(view)
        def wrapper(**kwargs: Any) -> Any:
            if auth in ("admin", "invoke", "read"):
                require_scope(auth)
            _check_path(kwargs, created)
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
    """The request's JSON body: 415 unless JSON; 400 or 422 unless strict JSON that PostgreSQL
    can store (app/web/json_body.py)."""
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "the body must be application/json")
    # MAX_CONTENT_LENGTH makes this a 413 when too large, chunked or not (BoundedRequest).
    return parse_json_body(request.get_data(cache=True))


def parse_body(model: type[BaseModel]) -> BaseModel:
    """The body as `model`, strictly: JSON has types, so `true` is no number and `1` no boolean
    (lax pydantic would take both, where the document says `integer` and `boolean`)."""
    return validate(model, read_json(), strict=True)


def parse_query(model: type[BaseModel]) -> BaseModel:
    data = request.args.to_dict()
    problems = unstorable_text_problems(data)
    if problems:
        raise invalid_text(problems)
    return validate(model, data)


def without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A field's JSON schema without its `null` option (and its `default: null`)."""
    options = [option for option in schema.get("anyOf", []) if option != {"type": "null"}]
    shaped = {key: value for key, value in schema.items() if key != "anyOf"}
    if "default" in shaped and shaped["default"] is None:
        del shaped["default"]
    if len(options) == 1:
        return {**options[0], **shaped}
    return {**shaped, "anyOf": options} if options else shaped


def fields_never_null(schema: dict[str, Any]) -> None:
    """`json_schema_extra` of a model whose fields may be left out but are refused as null (a
    PATCH): the document offers no null the server would refuse."""
    properties = schema.get("properties", {})
    for name, prop in properties.items():
        properties[name] = without_null(prop)


def _check_path(arguments: dict[str, Any], created: list[str]) -> None:
    """404 for a path argument that names nothing that could be stored; 422 `invalid_text` for
    one a PUT would create but PostgreSQL could not store."""
    for name, value in arguments.items():
        if not isinstance(value, str):
            continue
        if name in created:
            if has_unstorable_text(value):
                raise invalid_text(unstorable_text_problems(value, name))
            continue
        noun, pattern = PATH_IDS.get(name, (name.removesuffix("_id"), None))
        if has_unstorable_text(value) or (
            pattern is not None
            and (len(value) > MAX_ID_LENGTH or re.fullmatch(pattern, value) is None)
        ):
            raise ApiError(404, "not_found", f"no {noun} with id {value[:MAX_ID_LENGTH]!r}")


def _path_arguments(rule: str) -> list[str]:
    """`/api/workflows/<workflow_id>/credentials/<name>` -> ["workflow_id", "name"]."""
    return re.findall(r"<(?:[^<>:]+:)?([^<>:]+)>", rule)


def validate(model: type[BaseModel], data: Any, *, strict: bool = False) -> BaseModel:
    """A 422 listing every problem, each with the path of the field it concerns. A query is
    validated lax (its values are all strings: "50" is a number there), a JSON body strict."""
    try:
        return model.model_validate(data, strict=strict)
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
