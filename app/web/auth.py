"""Bearer API keys on management and status endpoints: admin may change things, invoke may
start runs and call tools, read may read."""

from __future__ import annotations

from flask import g, request

from app import apikeys
from app.web.context import web_context
from app.web.errors import ApiError


def require_scope(needed: apikeys.Scope) -> apikeys.Scope:
    """The caller's scope; 401 without a valid key, 403 when the key's scope is too small."""
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise ApiError(
            401,
            "unauthorized",
            "an API key is required: Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    scope = caller_scope(presented.strip())
    if scope is None:
        raise ApiError(
            401, "unauthorized", "the API key is not valid", headers={"WWW-Authenticate": "Bearer"}
        )
    if not apikeys.allows(scope, needed):
        message = f"this key has the {scope} scope; this action needs {needed}"
        raise ApiError(403, "forbidden", message)
    g.api_scope = scope
    return scope


def caller_scope(presented: str) -> apikeys.Scope | None:
    context = web_context()
    scope = apikeys.scope_from_env(context.env_keys, presented)
    if scope is None:
        with context.sessions() as session:
            scope = apikeys.scope_from_store(session, presented)
    return scope
