"""One error format for every answer: {"error": {"code", "message", "details"}}.

Never a 500 with a stack trace: unknown exceptions are logged and answered with a generic body;
an unreachable database or broker is a 503 with Retry-After, so clients back off and retry.
`Error` is that format as a model: the OpenAPI document names it for every error answer.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, jsonify
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.exceptions import HTTPException

from app.errors import Conflict, DefinitionInvalid, NotFound

log = logging.getLogger(__name__)

#: Seconds a client should wait after a 503 before trying again.
RETRY_AFTER_S = 5


class Problem(BaseModel):
    """One problem of a 422: what (`code`), where (`path`, dotted into the body) and why."""

    model_config = ConfigDict(extra="allow")

    code: str
    path: str
    message: str


class ErrorDetails(BaseModel):
    """More about an error: a 422 lists every problem it found."""

    model_config = ConfigDict(extra="allow")

    problems: list[Problem] = Field(default_factory=list)


class ErrorInfo(BaseModel):
    code: str = Field(description="stable, for programs: `not_found`, `validation_failed`, ...")
    message: str = Field(description="for people; never holds a secret")
    details: ErrorDetails | None


class Error(BaseModel):
    """Every answer other than success: `{"error": {"code", "message", "details"}}`."""

    error: ErrorInfo


class ApiError(Exception):
    """An answer other than success, raised anywhere in a request and shaped here."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details
        self.headers = headers or {}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The error format itself, for answers made outside Flask too (app/web/admission.py)."""
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> Response:
    response = jsonify(error_body(code, message, details))
    response.status_code = status
    g.error_code = code  # for the metrics of the request's outcome (app/web/triggers.py)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def unavailable(what: str) -> ApiError:
    return ApiError(
        503,
        "unavailable",
        f"{what} is unavailable; retry later",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def init_app(app: Flask) -> None:
    """Register the handlers that turn every exception into the one error format."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = (exc.name or "error").lower().replace(" ", "_")
        # werkzeug's own headers, as RFC 9110 asks: `Allow` on a 405, `Retry-After`, ...
        headers = {
            name: value for name, value in exc.get_headers() if name.lower() != "content-type"
        }
        return error_response(status, code, exc.description or exc.name, headers=headers)

    @app.errorhandler(NotFound)
    def _not_found(exc: NotFound) -> Response:
        return error_response(404, "not_found", str(exc))

    @app.errorhandler(Conflict)
    def _conflict(exc: Conflict) -> Response:
        return error_response(409, "conflict", str(exc))

    @app.errorhandler(DefinitionInvalid)
    def _invalid_definition(exc: DefinitionInvalid) -> Response:
        problems = [problem.to_dict() for problem in exc.problems]
        return error_response(422, "invalid_workflow", str(exc), {"problems": problems})

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if _is_database_down(exc):
            log.warning("database unavailable: %s", type(exc).__name__)
            return _as_response(unavailable("the database"))
        if _is_broker_down(exc):
            log.warning("broker unavailable: %s", type(exc).__name__)
            return _as_response(unavailable("the queue"))
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; it has been logged")


def _as_response(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def _is_database_down(exc: Exception) -> bool:
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _is_broker_down(exc: Exception) -> bool:
    from kombu.exceptions import OperationalError as KombuOperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, KombuOperationalError | RedisConnectionError | RedisTimeoutError)
