"""Bearer API keys on management and status endpoints: admin may change things, read may read."""

from __future__ import annotations

from typing import Literal

from flask import g, request

from app import apikeys
from app.web.context import web_context
from app.web.errors import ApiError


def require_scope(needed: Literal["admin", "read"]) -> apikeys.Scope:
    """The caller's scope; 401 without a valid key, 403 when a read key asks to write."""
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
    if needed == "admin" and scope != "admin":
        raise ApiError(403, "forbidden", "this key has the read scope; this action needs admin")
    g.api_scope = scope
    return scope


def caller_scope(presented: str) -> apikeys.Scope | None:
    context = web_context()
    scope = apikeys.scope_from_env(context.env_keys, presented)
    if scope is None:
        with context.sessions() as session:
            scope = apikeys.scope_from_store(session, presented)
    return scope
