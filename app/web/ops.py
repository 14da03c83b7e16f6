"""Operations endpoints: liveness, readiness, and the OpenAPI document."""

from __future__ import annotations

from importlib.metadata import version

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from sqlalchemy import text

from app.web.api import endpoint
from app.web.context import web_context
from app.web.openapi import build_document

bp = Blueprint("ops", __name__)


class Health(BaseModel):
    """Liveness or readiness, with the state of each dependency."""

    status: str
    checks: dict[str, str] = {}


@endpoint(bp, "/healthz", summary="The process is up", auth="none", responses={200: Health})
def healthz() -> ResponseReturnValue:
    return jsonify(Health(status="ok").model_dump())


@endpoint(
    bp,
    "/readyz",
    summary="The database and the broker are reachable",
    auth="none",
    responses={200: Health, 503: Health},
)
def readyz() -> ResponseReturnValue:
    context = web_context()
    checks = {"database": "ok", "broker": "ok"}
    try:
        with context.sessions() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:
        checks["database"] = f"unreachable ({type(exc).__name__})"
    if context.settings.broker_url.startswith(("redis://", "rediss://")):
        try:
            context.broker_redis.ping()
        except Exception as exc:
            checks["broker"] = f"unreachable ({type(exc).__name__})"
    ready = all(state == "ok" for state in checks.values())
    body = Health(status="ok" if ready else "unavailable", checks=checks).model_dump()
    if ready:
        return jsonify(body)
    response = jsonify(body)
    response.status_code = 503
    response.headers["Retry-After"] = "5"
    return response


@endpoint(bp, "/api/openapi.json", summary="This API as OpenAPI 3.1", auth="none")
def openapi() -> ResponseReturnValue:
    return jsonify(build_document(version("dualmcp")))
