"""Operations endpoints: liveness, readiness, and the OpenAPI document, also as a page.

Liveness (/healthz) is the process answering; readiness (/readyz) is what accepting a trigger
needs, the database alone (docs/operations.md: Probes).

/api/docs renders the document with Redoc's standalone bundle, vendored in docs_page/ (its
README.md: version, licence, source) and served from the package: no CDN, works offline. The
page is HTML for people, so it is not in the document itself.
"""

from __future__ import annotations

from importlib.metadata import version

from flask import Blueprint, Response, jsonify, url_for
from flask.typing import ResponseReturnValue
from markupsafe import escape
from pydantic import BaseModel
from sqlalchemy import text

from app.web.api import endpoint
from app.web.context import web_context
from app.web.openapi import build_document

bp = Blueprint("ops", __name__, static_folder="docs_page", static_url_path="/api/docs/assets")

#: The page's scripts and data come from this server only; Redoc styles itself inline and runs
#: its search index in a worker made from a blob.
DOCS_PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:;"
    " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Dual MCP API</title>
</head>
<body>
<redoc spec-url="{spec}"></redoc>
<script src="{bundle}"></script>
</body>
</html>
"""


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
    summary="A trigger can be accepted: the database answers (the broker's state is shown too)",
    auth="none",
    responses={200: Health, 503: Health},
)
def readyz() -> ResponseReturnValue:
    """Ready while PostgreSQL answers: a trigger is accepted then (202) even with Redis down,
    as the sweeper publishes it later (DESIGN.md: Execution 1), so a broker outage must not
    take the web out of its load balancer (issue 16). The broker's state is information."""
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
            checks["broker"] = f"unreachable ({type(exc).__name__}); triggers wait in the database"
    ready = checks["database"] == "ok"
    body = Health(status="ok" if ready else "unavailable", checks=checks).model_dump()
    response = jsonify(body)
    if not ready:
        response.status_code = 503
        response.headers["Retry-After"] = "5"
    return response


@endpoint(bp, "/api/openapi.json", summary="This API as OpenAPI 3.1", auth="none")
def openapi() -> ResponseReturnValue:
    return jsonify(build_document(version("dualmcp")))


@bp.get("/api/docs")
def api_docs() -> ResponseReturnValue:
    """The OpenAPI document, rendered in the browser by the vendored Redoc bundle."""
    page = _DOCS_PAGE.format(
        spec=escape(url_for("ops.openapi")),
        bundle=escape(url_for("ops.static", filename="redoc.standalone.js")),
    )
    response = Response(page, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = DOCS_PAGE_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
