"""Runs over HTTP: status for dashboards (one run, or a page of them), cancel and retry."""

from __future__ import annotations

from typing import Annotated, Literal

from flask import Blueprint, Response
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from app import metrics, workflows
from app.engine.schema import RunStatus
from app.errors import Conflict
from app.models import reads_only
from app.web.admission import admit_new_run
from app.web.api import endpoint
from app.web.context import web_context
from app.web.schemas import RunOut, RunPage, page_cursor, respond
from app.workflows.runs import decode_cursor

bp = Blueprint("runs", __name__)


class StatusQuery(BaseModel):
    run_id: str = Field(min_length=1)


class RunsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow_id: str | None = None
    status: RunStatus | None = None
    limit: int = Field(50, ge=1, le=200)
    #: `next_cursor` of the previous page.
    cursor: Annotated[str | None, page_cursor(decode_cursor)] = None


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


@endpoint(
    bp,
    "/api/workflow/status",
    summary="A run with its node runs (the seed's path)",
    query=StatusQuery,
    responses={200: RunOut},
)
def workflow_status(query: StatusQuery) -> ResponseReturnValue:
    return _run(query.run_id)


@endpoint(bp, "/api/runs/<run_id>", summary="A run with its node runs", responses={200: RunOut})
def get_run(run_id: str) -> ResponseReturnValue:
    return _run(run_id)


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
        )
    return respond(RunPage, {"runs": runs, "next_cursor": next_cursor})


@endpoint(
    bp,
    "/api/runs/<run_id>/cancel",
    method="POST",
    summary="Cancel a queued or running run; nodes under way finish, nothing after them starts",
    auth="admin",
    responses={200: RunOut},
)
def cancel_run(run_id: str) -> ResponseReturnValue:
    with web_context().sessions.begin() as session:
        if not workflows.cancel_run(session, run_id):
            status = workflows.get_run(session, run_id, with_nodes=False)["status"]
            raise Conflict(f"run {run_id} has already finished ({status})")
    metrics.record_run_finished("cancelled")
    return _run(run_id)


@endpoint(
    bp,
    "/api/runs/<run_id>/retry",
    method="POST",
    summary="Retry a run from its failed node, or from the start as a new run",
    auth="admin",
    body=RetryRequest,
    body_optional=True,
    responses={202: RunOut},
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
