"""Runs over HTTP: status for dashboards (one run, or a page of them), its changes as
Server-Sent Events, cancel and retry."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from flask import Blueprint, Response, current_app, request
from flask.typing import ResponseReturnValue
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from app import metrics, workflows
from app.engine.schema import TERMINAL_RUN_STATUSES, RunStatus
from app.errors import Conflict
from app.models import reads_only
from app.web import run_events
from app.web.admission import admit_new_run
from app.web.api import endpoint
from app.web.context import web_context
from app.web.errors import ApiError
from app.web.schemas import RunEventStream, RunOut, RunPage, page_cursor, respond
from app.workflows.runs import decode_cursor

bp = Blueprint("runs", __name__)


class StatusQuery(BaseModel):
    run_id: str = Field(min_length=1)


def _iso_8601(value: Any) -> Any:
    """A date-time as ISO 8601 text only: pydantic alone would also read `1700000000` as Unix
    time, which a dashboard never means."""
    if not isinstance(value, str) or not re.match(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}", value):
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-12-01T10:00:00Z")
    return value


def _as_utc(value: datetime) -> datetime:
    """A time without an offset is UTC, as every time this API writes."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


#: A query's date-time: ISO 8601, UTC unless it names an offset.
QueryTime = Annotated[datetime, BeforeValidator(_iso_8601), AfterValidator(_as_utc)]


class RunsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow_id: str | None = None
    status: RunStatus | None = None
    limit: int = Field(50, ge=1, le=200)
    #: `next_cursor` of the previous page.
    cursor: Annotated[str | None, page_cursor(decode_cursor)] = None
    #: Runs created at or after this time.
    since: QueryTime | None = None
    #: Runs created before this time.
    until: QueryTime | None = None


class RetryRequest(BaseModel):
    """Resume the failed run from its failed node(s), or start a new run with the same input."""

    model_config = ConfigDict(extra="forbid")

    from_: Literal["failed", "start"] = Field("failed", alias="from")
    #: A resumed run keeps its original version; a new one may take the current one.
    version: Literal["original", "current"] = "original"

    @field_validator("version")
    @classmethod
    def _resume_keeps_its_version(cls, value: str, info: ValidationInfo) -> str:
        if value == "current" and info.data.get("from_") == "failed":
            raise ValueError('"current" needs "from": "start"; a resumed run keeps its version')
        return value


def _run(run_id: str, status: int = 200) -> Response:
    # Dashboards poll this: two SELECTs and no BEGIN/ROLLBACK round trips on PostgreSQL.
    with reads_only(web_context().sessions) as session:
        shaped = workflows.get_run(session, run_id)
    return respond(RunOut, shaped, status)


def _polled_run(run_id: str) -> Response:
    """The run with an ETag; 304 without a body when If-None-Match names it (cheap polling)."""
    with reads_only(web_context().sessions) as session:
        shaped = workflows.get_run(session, run_id)
    tag = run_etag(shaped)
    if request.if_none_match.contains_weak(tag):
        response = Response(status=304)
    else:
        response = respond(RunOut, shaped)
    response.set_etag(tag, weak=True)
    return response


def run_etag(run: dict[str, Any]) -> str:
    """A digest of the run as answered, but for an unfinished run's `duration_ms`, which
    grows with the clock alone: the tag changes when the run or a node does (weak, since the
    bodies it stands for differ in that one field)."""
    if run["status"] not in TERMINAL_RUN_STATUSES:
        run = {**run, "duration_ms": None}
    text = json.dumps(run, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@endpoint(
    bp,
    "/api/workflow/status",
    summary="A run with its node runs (the seed's path)",
    query=StatusQuery,
    responses={200: RunOut, 304: None, 404: None},
)
def workflow_status(query: StatusQuery) -> ResponseReturnValue:
    return _polled_run(query.run_id)


@endpoint(
    bp,
    "/api/runs/<run_id>",
    summary="A run with every node of its definition (state, attempts, edges); ETag for polling",
    responses={200: RunOut, 304: None},
)
def get_run(run_id: str) -> ResponseReturnValue:
    return _polled_run(run_id)


@endpoint(
    bp,
    "/api/runs/<run_id>/events",
    summary="A run's changes as Server-Sent Events, until it ends",
    responses={200: RunEventStream, 503: None},
)
def get_run_events(run_id: str) -> ResponseReturnValue:
    context = web_context()
    settings = context.settings
    slots = run_events.stream_slots(current_app, settings.run_events_max_streams)
    if not slots.take():
        raise ApiError(
            503,
            "too_many_streams",
            f"this process serves {slots.limit} run event streams at once; retry later, or"
            " poll GET /api/runs/<id> with If-None-Match",
            headers={"Retry-After": str(run_events.RETRY_AFTER_S)},
        )
    try:
        with reads_only(context.sessions) as session:
            first = workflows.get_run(session, run_id)  # an unknown run is a 404, not a stream
    except BaseException:
        slots.give_back()
        raise

    def read_run() -> dict[str, Any]:
        with reads_only(context.sessions) as session:
            return workflows.get_run(session, run_id)

    stream = run_events.run_events(read_run, first, max_s=settings.run_events_max_s)
    response = Response(stream, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    response.call_on_close(slots.give_back)
    return response


@endpoint(
    bp,
    "/api/runs",
    summary="A page of runs, newest first, for dashboards",
    query=RunsQuery,
    responses={200: RunPage},
)
def list_runs(query: RunsQuery) -> ResponseReturnValue:
    with web_context().sessions() as session:
        runs, next_cursor = workflows.list_runs(
            session,
            workflow_id=query.workflow_id,
            status=query.status,
            limit=query.limit,
            cursor=query.cursor,
            since=query.since,
            until=query.until,
        )
    page = {"runs": runs, "next_cursor": next_cursor, "has_more": next_cursor is not None}
    return respond(RunPage, page)


@endpoint(
    bp,
    "/api/runs/<run_id>/cancel",
    method="POST",
    summary="Cancel a queued or running run; nodes under way finish, nothing after them starts",
    auth="admin",
    responses={200: RunOut, 409: None},
)
def cancel_run(run_id: str) -> ResponseReturnValue:
    with web_context().sessions.begin() as session:
        if not workflows.cancel_run(session, run_id):
            status = workflows.get_run(session, run_id, with_nodes=False)["status"]
            raise Conflict(f"run {run_id} has already finished ({status})")
        workflow_id = workflows.get_run(session, run_id, with_nodes=False)["workflow_id"]
    cap = web_context().settings.metrics_max_workflows
    metrics.record_run_finished("cancelled", workflow_id, max_workflows=cap)
    return _run(run_id)


@endpoint(
    bp,
    "/api/runs/<run_id>/retry",
    method="POST",
    summary="Retry a run from its failed node, or from the start as a new run",
    auth="admin",
    body=RetryRequest,
    body_optional=True,
    responses={202: RunOut, 409: None},
)
def retry_run(run_id: str, body: RetryRequest) -> ResponseReturnValue:
    context = web_context()
    if body.from_ == "start":
        admit_new_run()
    with context.sessions.begin() as session:
        started = workflows.retry_run(session, run_id, from_=body.from_, version=body.version)
    context.publish(started.to_publish)
    response = _run(started.run_id, 202)
    response.headers["Location"] = f"/api/runs/{started.run_id}"
    return response
