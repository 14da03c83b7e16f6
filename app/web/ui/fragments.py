"""The data of the pages, as HTML fragments for htmx: each checks the API key like the API
(read scope) and reads through the same service functions as the API's views. Secrets are
masked as the API masks them for read keys (app/web/redact.py), whatever the key."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from app import apikeys, workflows
from app.agents import store as agent_store
from app.agents.schemas import AGENT_ID_PATTERN, SESSION_ID_PATTERN
from app.engine.schema import TERMINAL_RUN_STATUSES, WORKFLOW_ID_PATTERN
from app.errors import NotFound
from app.messaging.outbox import list_outbox
from app.models import reads_only
from app.web.auth import require_scope
from app.web.context import web_context
from app.web.errors import ApiError
from app.web.redact import redact_secrets
from app.web.ui import reads
from app.web.ui.security import secure_headers
from app.workflows.deliveries import list_deliveries
from app.workflows.runs import InvalidCursor

bp = Blueprint("ui_fragments", __name__, url_prefix="/ui/fragments")
bp.after_request(secure_headers)

RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
#: Seconds between two refreshes of a fragment that shows an unfinished run.
REFRESH_S = 2
#: The longest id of any kind (the columns are 128 characters).
MAX_ID_LENGTH = 128


def _render(template: str, **data: Any) -> Response:
    """A fragment: never cached (it holds data a key was needed for)."""
    response = Response(render_template(template, refresh_s=REFRESH_S, **data))
    response.headers["Cache-Control"] = "no-store"
    return response


def _scope() -> apikeys.Scope:
    return require_scope("read")


def _is_admin(scope: apikeys.Scope) -> bool:
    return apikeys.allows(scope, "admin")


def _checked_id(value: str | None, pattern: str, noun: str) -> str:
    """An id from the URL that could name something stored; 404 otherwise (a NUL or 5,000
    characters never reach the database: issue 13)."""
    if not value or len(value) > MAX_ID_LENGTH or not re.fullmatch(pattern, value):
        raise NotFound(f"no {noun} with id {value!r}"[:200])
    return value


@bp.get("/whoami")
def whoami() -> ResponseReturnValue:
    """The key's scope: the pages show it, and the login page checks a key with it."""
    return _render("ui/whoami.html", scope=_scope())


@bp.get("/runs")
def runs() -> ResponseReturnValue:
    _scope()
    args = request.args
    workflow_id = args.get("workflow_id") or None
    if workflow_id is not None:
        workflow_id = _checked_id(workflow_id, WORKFLOW_ID_PATTERN, "workflow")
    status = args.get("status") or None
    if status is not None and status not in RUN_STATUSES:
        raise ApiError(422, "validation_failed", f"status must be one of {', '.join(RUN_STATUSES)}")
    since = args.get("since") or None
    if since is not None and since not in reads.SINCE_CHOICES:
        raise ApiError(422, "validation_failed", "since must be one of 1h, 24h, 7d")
    cursor = args.get("cursor") or None
    try:
        with reads_only(web_context().sessions) as session:
            shown, next_cursor = reads.runs_since(
                session, workflow_id=workflow_id, status=status, since=since, cursor=cursor
            )
    except InvalidCursor:
        raise ApiError(422, "validation_failed", "not a cursor from a previous page") from None
    filters = {"workflow_id": workflow_id, "status": status, "since": since}
    filters = {name: value for name, value in filters.items() if value}
    return _render(
        "ui/runs.html",
        runs=shown,
        next_cursor=next_cursor,
        filters=filters,
        cursor=cursor,
        live=any(run["status"] not in TERMINAL_RUN_STATUSES for run in shown),
    )


@bp.get("/runs/<run_id>")
def run(run_id: str) -> ResponseReturnValue:
    scope = _scope()
    with reads_only(web_context().sessions) as session:
        view = reads.run_view(session, run_id)
    return _render("ui/run.html", view=view, admin=_is_admin(scope))


@bp.get("/workflows", endpoint="workflows")
def workflows_list() -> ResponseReturnValue:
    _scope()
    with web_context().sessions() as session:
        rows = [
            {
                **workflows.workflow_to_dict(workflow, with_definition=False),
                "trigger_type": (workflow.trigger_config or {}).get("type", "manual"),
                "last_runs": _last_runs(session, workflow.workflow_id),
            }
            for workflow in workflows.list_workflows(session)
        ]
    return _render("ui/workflows.html", workflows=rows)


@bp.get("/workflows/<workflow_id>")
def workflow(workflow_id: str) -> ResponseReturnValue:
    _scope()
    workflow_id = _checked_id(workflow_id, WORKFLOW_ID_PATTERN, "workflow")
    context = web_context()
    with context.sessions() as session:
        row = workflows.get_workflow(session, workflow_id)
        shaped = workflows.workflow_to_dict(row)
        trigger = (row.trigger_config or {}).get("type", "manual")
        versions = [
            workflows.version_to_dict(v) for v in workflows.list_versions(session, row.workflow_id)
        ]
        last_runs = _last_runs(session, workflow_id, 10)
        deliveries: list[dict[str, Any]] = []
        if trigger == "webhook":
            deliveries, _ = list_deliveries(
                session, workflow_id, days=context.settings.delivery_log_days, limit=20
            )
    return _render(
        "ui/workflow.html",
        workflow=shaped,
        definition=redact_secrets(shaped["definition"]),
        trigger_type=trigger,
        versions=versions,
        last_runs=last_runs,
        deliveries=deliveries,
    )


@bp.get("/agents")
def agents() -> ResponseReturnValue:
    _scope()
    with web_context().sessions() as session:
        rows = [
            redact_secrets(agent_store.agent_to_dict(a)) for a in agent_store.list_agents(session)
        ]
    return _render("ui/agents.html", agents=rows)


@bp.get("/agents/<agent_id>")
def agent(agent_id: str) -> ResponseReturnValue:
    _scope()
    agent_id = _checked_id(agent_id, AGENT_ID_PATTERN, "agent")
    session_id = request.args.get("session_id") or None
    if session_id is not None:
        session_id = _checked_id(session_id, SESSION_ID_PATTERN, "session")
    context = web_context()
    with context.sessions() as session:
        shaped = redact_secrets(agent_store.agent_to_dict(agent_store.get_agent(session, agent_id)))
        sessions = reads.agent_sessions(session, agent_id)
    if session_id is None and sessions:
        session_id = sessions[0]["session_id"]
    messages = context.agents.memory.history(agent_id, session_id, 100) if session_id else []
    return _render(
        "ui/agent.html",
        agent=shaped,
        sessions=sessions,
        session_id=session_id,
        messages=redact_secrets(messages),
    )


@bp.get("/outbox")
def outbox() -> ResponseReturnValue:
    _scope()
    with web_context().sessions() as session:
        messages = redact_secrets(list_outbox(session, limit=50))
    return _render("ui/outbox.html", messages=messages)


def _last_runs(session: Session, workflow_id: str, limit: int = 5) -> list[dict[str, Any]]:
    runs, _ = workflows.list_runs(session, workflow_id=workflow_id, limit=limit)
    return runs
