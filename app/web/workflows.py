"""Workflow definitions over HTTP: create, read (any version), replace, pause, list; and the
trigger token of a `"scheme": "token"` webhook, shown once in the answer that made it.

The body is the workflow JSON itself. It is checked by the engine through `save_workflow`, not
by the endpoint's model, so one 422 lists every problem (schema, graph and params) with its code
and path; `WorkflowBody` accepts any JSON and only describes the shape for the OpenAPI document.
"""

from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint, Response, g, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, RootModel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from app import workflows
from app.engine.schema import WorkflowDefinition
from app.engine.validation import Problem
from app.errors import DefinitionInvalid
from app.web.api import endpoint
from app.web.context import web_context
from app.web.redact import redact_secrets
from app.web.schemas import VersionList, WorkflowList, WorkflowOut, respond
from app.workflows.trigger_tokens import rotate_trigger_token, sync_trigger_token

bp = Blueprint("workflows", __name__)


class WorkflowBody(RootModel[Any]):
    """A workflow definition (DESIGN.md: Workflow definition); on PUT `workflow_id` may be left
    out. Checked by the engine, which lists every problem in one 422."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(WorkflowDefinition.__pydantic_core_schema__)


class WorkflowVersionBody(WorkflowBody):
    """A workflow definition whose `workflow_id` may be left out: the path names it (PUT)."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        definition = handler.resolve_ref_schema(
            super().__get_pydantic_json_schema__(core_schema, handler)
        )
        required = [name for name in definition.get("required", []) if name != "workflow_id"]
        return {**definition, "title": "WorkflowVersion", "required": required}


class VersionQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: A stored version; the current one when left out.
    version: int | None = Field(None, ge=1)


class WorkflowSaved(WorkflowOut):
    """A saved workflow; with its trigger token when this save made one (shown this once)."""

    trigger_token: str | None = Field(
        None,
        description='the token a `"scheme": "token"` webhook trigger takes, present only in '
        "the answer that made it (store it now: only its hash is kept)",
    )


class TriggerToken(BaseModel):
    """A workflow's new trigger token, shown this once; the old one no longer works."""

    workflow_id: str
    trigger_token: str


class StatusChange(BaseModel):
    """Pause a workflow (no new runs start; runs under way finish) or activate it again."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["active", "paused"]


@endpoint(
    bp,
    "/api/workflows",
    method="POST",
    summary="Create a workflow from its definition",
    auth="admin",
    body=WorkflowBody,
    responses={201: WorkflowSaved, 409: None},
)
def create_workflow(body: WorkflowBody) -> ResponseReturnValue:
    with web_context().sessions.begin() as session:
        workflow = workflows.save_workflow(session, body.root, create_only=True)
        token = sync_trigger_token(session, workflow.workflow_id)
        shaped = workflows.workflow_to_dict(workflow)
    return _answer(shaped, 201, trigger_token=token)


@endpoint(bp, "/api/workflows", summary="List workflows", responses={200: WorkflowList})
def list_workflows() -> ResponseReturnValue:
    with web_context().sessions() as session:
        shaped = [
            workflows.workflow_to_dict(workflow, with_definition=False)
            for workflow in workflows.list_workflows(session)
        ]
    return respond(WorkflowList, {"workflows": shaped})


@endpoint(
    bp,
    "/api/workflows/<workflow_id>",
    summary="Read a workflow: the current definition, or `?version=N`",
    query=VersionQuery,
    responses={200: WorkflowOut},
)
def get_workflow(workflow_id: str, query: VersionQuery) -> ResponseReturnValue:
    with web_context().sessions() as session:
        workflow = workflows.get_workflow(session, workflow_id)
        version = None
        if query.version is not None:
            version = workflows.get_version(session, workflow_id, query.version)
        shaped = workflows.workflow_to_dict(workflow, version)
    return _answer(shaped)


@endpoint(
    bp,
    "/api/workflows/<workflow_id>",
    method="PUT",
    summary="Store a new version of a workflow (created when new); runs keep their version",
    auth="admin",
    body=WorkflowVersionBody,
    responses={200: WorkflowSaved, 201: WorkflowSaved, 409: None},
)
def replace_workflow(workflow_id: str, body: WorkflowVersionBody) -> ResponseReturnValue:
    raw = body.root
    if isinstance(raw, dict):
        given = raw.get("workflow_id", workflow_id)
        if given != workflow_id:
            message = f"is {given!r} but the path names {workflow_id!r}"
            raise DefinitionInvalid([Problem("workflow_id_mismatch", "workflow_id", message)])
        raw = {**raw, "workflow_id": workflow_id}
    with web_context().sessions.begin() as session:
        workflow = workflows.save_workflow(session, raw)
        token = sync_trigger_token(session, workflow.workflow_id)
        shaped = workflows.workflow_to_dict(workflow)
    return _answer(shaped, 201 if shaped["version"] == 1 else 200, trigger_token=token)


@endpoint(
    bp,
    "/api/workflows/<workflow_id>/trigger-token",
    method="POST",
    summary="Make a new trigger token for a token webhook (shown once; the old one stops working)",
    auth="admin",
    responses={200: TriggerToken, 404: None, 409: None},
)
def new_trigger_token(workflow_id: str) -> ResponseReturnValue:
    with web_context().sessions.begin() as session:
        token = rotate_trigger_token(session, workflow_id)
    return _no_store(respond(TriggerToken, {"workflow_id": workflow_id, "trigger_token": token}))


@endpoint(
    bp,
    "/api/workflows/<workflow_id>/status",
    method="PATCH",
    summary="Pause or activate a workflow",
    auth="admin",
    body=StatusChange,
    responses={200: WorkflowOut},
)
def change_status(workflow_id: str, body: StatusChange) -> ResponseReturnValue:
    with web_context().sessions.begin() as session:
        workflow = workflows.set_workflow_status(session, workflow_id, body.status)
        shaped = workflows.workflow_to_dict(workflow)
    return _answer(shaped)


@endpoint(
    bp,
    "/api/workflows/<workflow_id>/versions",
    summary="List a workflow's stored versions, newest first",
    responses={200: VersionList},
)
def list_versions(workflow_id: str) -> ResponseReturnValue:
    with web_context().sessions() as session:
        versions = [
            workflows.version_to_dict(row) for row in workflows.list_versions(session, workflow_id)
        ]
    return respond(VersionList, {"workflow_id": workflow_id, "versions": versions})


def _answer(
    shaped: dict[str, Any], status: int = 200, *, trigger_token: str | None = None
) -> ResponseReturnValue:
    """Secrets in the definition are shown to admin keys only (they could change them anyway).
    A trigger token made by this save is added under `trigger_token`; other answers have none."""
    if g.get("api_scope") != "admin":
        shaped = {**shaped, "definition": redact_secrets(shaped["definition"])}
    if trigger_token is None:
        response = respond(WorkflowOut, shaped, status)
    else:
        answer = WorkflowOut.model_validate(shaped).model_dump(mode="json")
        response = _no_store(jsonify({**answer, "trigger_token": trigger_token}))
        response.status_code = status
    if status == 201:
        response.headers["Location"] = f"/api/workflows/{shaped['workflow_id']}"
    return response


def _no_store(response: Response) -> Response:
    """An answer holding a token: no cache (a proxy's, a browser's) may keep it."""
    response.headers["Cache-Control"] = "no-store"
    return response
