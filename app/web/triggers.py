"""Starting runs over HTTP: signed webhook triggers, and the seed's admin `execute`.

Each request is one transaction (trigger_event + run + entry node_run), published after commit
(DESIGN.md: Execution 1). A repeated idempotency key answers 200 with the first run and
`Idempotent-Replayed: true`; the same key with another body answers 422 (Stripe's rules).
A workflow with a `tool` block has an input schema: a run's input that breaks it is a 422
listing every problem, and nothing is written.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from app import metrics
from app.engine.tool_input import tool_input_problems
from app.errors import Conflict, NotFound
from app.models import each_statement_commits, is_postgresql
from app.web import signatures, webhook_payloads
from app.web.admission import admit_new_run
from app.web.api import endpoint, read_json
from app.web.context import web_context
from app.web.errors import ApiError
from app.web.rate_limits import door_retry_after, rate_limited
from app.workflows import start_run
from app.workflows.store import (
    TriggerTarget,
    forget_trigger_target,
    get_definition,
    get_trigger_target,
    remembered_trigger_target,
)
from app.workflows.triggers import IdempotencyKeyReused, Source, TriggerResult, accept_trigger

log = logging.getLogger(__name__)

bp = Blueprint("triggers", __name__)

#: Longest `Idempotency-Key` header accepted (Stripe's limit).
MAX_IDEMPOTENCY_KEY = 255


class RunAccepted(BaseModel):
    """A run was started (202), or a repeated key found the first run (200, duplicate)."""

    run_id: str
    status: str = "queued"
    status_url: str
    duplicate: bool | None = Field(None, description="true on a replayed idempotency key")


class ExecuteRequest(BaseModel):
    """Start a run of a workflow with this input (the seed's POST /api/workflow/execute)."""

    model_config = ConfigDict(extra="forbid")

    workflow_id: str = Field(min_length=1, max_length=128)
    input: Any = Field(default_factory=dict, description="the run's trigger payload")


class InputInvalid(ApiError):
    """The run's input breaks the workflow's input schema (422 `validation_failed`)."""


_TRIGGER_RESPONSES: dict[int, type[BaseModel] | None] = {
    202: RunAccepted,
    200: RunAccepted,
    401: None,
    403: None,
    404: None,
    409: None,
    422: None,
    429: None,
    503: None,
}


@endpoint(
    bp,
    "/api/triggers/webhook/<workflow_id>",
    method="POST",
    summary="Fire a workflow's signed webhook trigger",
    auth="signature",
    responses=_TRIGGER_RESPONSES,
)
def webhook_trigger(workflow_id: str) -> ResponseReturnValue:
    return _fire_webhook(workflow_id)


@endpoint(
    bp,
    "/api/triggers/webhook",
    method="POST",
    summary="Fire a signed webhook trigger; workflow id in X-Workflow-Id or the body (seed)",
    auth="signature",
    responses=_TRIGGER_RESPONSES,
)
def webhook_trigger_seed() -> ResponseReturnValue:
    return _fire_webhook(request.headers.get("X-Workflow-Id") or _workflow_id_from_body())


@endpoint(
    bp,
    "/api/workflow/execute",
    method="POST",
    summary="Start a run (seed); an Idempotency-Key header makes repeats return the first run",
    auth="invoke",
    body=ExecuteRequest,
    responses={202: RunAccepted, 200: RunAccepted, 404: None, 409: None, 422: None, 503: None},
)
def execute(body: ExecuteRequest) -> ResponseReturnValue:
    key = _idempotency_key_header()
    admit_new_run()
    # Stripe compares parameters, not bytes: the same JSON value is the same request.
    canonical = json.dumps(
        {"workflow_id": body.workflow_id, "input": body.input},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    if key is None:
        return _start(body.workflow_id, body.input)
    return _accept(body.workflow_id, key, canonical, body.input, source="api")


def _fire_webhook(workflow_id: str) -> Response:
    raw = request.get_data(cache=True)  # the exact bytes the sender signed
    admit_new_run()
    context = web_context()
    # On PostgreSQL: one statement writes event + run + entry node (app/workflows/triggers.py),
    # after a read of the workflow only when this process holds no current copy of it.
    try:
        with each_statement_commits(context.sessions) as session:
            result = _accept_webhook(session, workflow_id, raw)
    except IdempotencyKeyReused as exc:
        raise ApiError(422, "idempotency_key_reused", str(exc)) from None
    context.publish(result.to_publish)
    return _answer(result)


def _accept_webhook(session: Session, workflow_id: str, raw: bytes) -> TriggerResult:
    """Try this process's copy of the workflow's trigger settings first (no read: the insert
    itself refuses a stale copy). Anything the copy refuses is decided again on a fresh read,
    so a stale copy never turns away what the current settings accept, nor logs a refusal."""
    copy = remembered_trigger_target(session, workflow_id)
    if copy is None or not _signed_for(copy, raw):
        # What this process's copy cannot vouch for pays the refusal limit's one Redis read.
        retry_after = door_retry_after()
        if retry_after is not None:
            _accept_while_limited(session, workflow_id, raw, retry_after, copy)
    remembered = copy if is_postgresql(session) else None
    if remembered is not None:
        try:
            return _accept_signed(session, remembered, raw, log_refusal=False)
        except (Conflict, NotFound, InputInvalid):  # paused, stale, or another version's schema
            pass
        except ApiError as exc:
            if exc.status not in (401, 403):  # the body's own faults do not depend on the copy
                raise
        forget_trigger_target(session, workflow_id)
    return _accept_signed(session, get_trigger_target(session, workflow_id), raw, log_refusal=True)


def _signed_for(target: TriggerTarget, raw: bytes) -> bool:
    """Whether the delivery is signed for `target` (CPU only; a refusal is not logged here)."""
    try:
        scheme, secrets = _webhook_config(target)
        _verify(target.workflow_id, scheme, secrets, raw, log_refusal=False)
    except ApiError:
        return False
    return True


def _accept_while_limited(
    session: Session, workflow_id: str, raw: bytes, retry_after: int, copy: TriggerTarget | None
) -> None:
    """Past the refusal limit (app/web/rate_limits.py) a delivery goes on only when it is signed
    for the workflow as this process knows it, with no database read: a flood of bad
    signatures costs one HMAC and one Redis read each, and a well-signed sender is never
    limited. A workflow this process holds no copy of is read once (then remembered); an
    unknown one is remembered as unknown for the window."""
    if copy is None and not _known_unknown(workflow_id):
        try:
            fresh = get_trigger_target(session, workflow_id)
        except NotFound:
            _remember_unknown(workflow_id, retry_after)
        else:
            if _signed_for(fresh, raw):
                return
    raise rate_limited(retry_after)


#: Workflow ids found unknown while their door was limited: id -> when to look again.
_unknown_workflows: dict[str, float] = {}


def _known_unknown(workflow_id: str) -> bool:
    return _unknown_workflows.get(workflow_id, 0.0) > time.monotonic()


def _remember_unknown(workflow_id: str, for_s: int) -> None:
    if len(_unknown_workflows) > 10_000:
        _unknown_workflows.clear()
    _unknown_workflows[workflow_id] = time.monotonic() + for_s


def _accept_signed(
    session: Session, workflow: TriggerTarget, raw: bytes, *, log_refusal: bool
) -> TriggerResult:
    """The signature check (CPU only, no I/O), then the body, then the one write. Only a signed
    sender learns about the input schema; its paths point into the body."""
    g.webhook_target, g.webhook_delivery_id = workflow, None  # the delivery log (deliveries.py)
    scheme, secrets = _webhook_config(workflow)
    verified = _verify(workflow.workflow_id, scheme, secrets, raw, log_refusal=log_refusal)
    g.webhook_delivery_id = verified.idempotency_key  # signed: no refusal limit counts it
    payload = webhook_payloads.read_webhook_payload()  # JSON, a form or text (any signed sender)
    _check_input(session, workflow, payload, prefix="")
    return accept_trigger(
        session,
        workflow.workflow_id,
        verified.idempotency_key,
        raw,
        payload,
        source="webhook",
        workflow=workflow,
    )


def _accept(workflow_id: str, key: str, raw: bytes, payload: Any, *, source: Source) -> Response:
    context = web_context()
    try:
        with each_statement_commits(context.sessions) as session:
            target = get_trigger_target(session, workflow_id)  # the read accept_trigger makes
            _check_input(session, target, payload, prefix="input")
            result = accept_trigger(
                session, workflow_id, key, raw, payload, source=source, workflow=target
            )
    except IdempotencyKeyReused as exc:
        raise ApiError(422, "idempotency_key_reused", str(exc)) from None
    context.publish(result.to_publish)
    return _answer(result)


def _start(workflow_id: str, payload: Any) -> Response:
    context = web_context()
    with context.sessions.begin() as session:
        target = get_trigger_target(session, workflow_id)  # the read start_run makes
        _check_input(session, target, payload, prefix="input")
        started = start_run(session, workflow_id, payload, workflow=target)
    context.publish(started.to_publish)
    return _answer(TriggerResult(started.run_id, duplicate=False))


def _check_input(session: Session, workflow: TriggerTarget, payload: Any, *, prefix: str) -> None:
    """InputInvalid listing every problem when the workflow has a tool block and the input
    breaks its schema. The definition is the one the run would start with, already cached by
    the time a trigger is accepted; a paused workflow is left to the Conflict that follows."""
    if workflow.status != "active":
        return
    tool = get_definition(session, workflow.workflow_id, workflow.version).tool
    if tool is None:
        return
    problems = tool_input_problems(tool, payload, prefix=prefix)
    if problems:
        fields = ", ".join(dict.fromkeys(problem.path or "(body)" for problem in problems))
        details = {"problems": [problem.to_dict() for problem in problems]}
        raise InputInvalid(422, "validation_failed", f"invalid fields: {fields}", details)


def _answer(result: TriggerResult) -> Response:
    status_url = f"/api/runs/{result.run_id}"
    body = RunAccepted(
        run_id=result.run_id, status_url=status_url, duplicate=result.duplicate or None
    )
    response = jsonify(body.model_dump(exclude_none=True))
    if result.duplicate:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    else:
        response.status_code = 202
        response.headers["Location"] = status_url
    return response


def _webhook_config(workflow: TriggerTarget) -> tuple[str, list[str]]:
    """The trigger's scheme and secrets; 403 when the workflow takes no signed webhooks."""
    config = workflow.trigger_config or {}
    scheme = config.get("scheme") or "standard"
    secrets = [s for s in config.get("secrets") or [] if isinstance(s, str) and s]
    if scheme == "token":  # the token's stored digest stands in for the secrets
        secrets = [workflow.trigger_token_hash] if workflow.trigger_token_hash else []
    if config.get("type") != "webhook" or not secrets or scheme not in signatures.SCHEMES:
        raise ApiError(
            403,
            "webhook_not_enabled",
            f"workflow {workflow.workflow_id!r} does not take signed webhook triggers",
        )
    return scheme, secrets


def _verify(
    workflow_id: str, scheme: str, secrets: list[str], raw: bytes, *, log_refusal: bool = True
) -> signatures.Verified:
    """The verified delivery; a generic 401 otherwise, its reason logged (never a secret)."""
    url = webhook_payloads.delivery_url(web_context().settings.public_base_url)
    try:
        headers = dict(request.headers.items())
        return signatures.verify(scheme, secrets, raw, headers, time.time(), url=url)
    except signatures.SignatureInvalid as exc:
        if log_refusal:
            g.refusal_reason = f"invalid_signature:{exc.reason}"
            log.warning(
                "webhook for workflow %s rejected (%s scheme): %s",
                workflow_id,
                scheme,
                exc,  # "<reason>: <detail>", header names and ages only, never a secret
            )
        raise ApiError(401, "invalid_signature", "signature verification failed") from None


@bp.after_request
def _count_trigger(response: Response) -> Response:
    """Triggers accepted, replayed and refused (by reason) for GET /metrics; no I/O."""
    source = "api" if request.endpoint == f"{bp.name}.execute" else "webhook"
    if response.status_code == 202:
        metrics.record_trigger_accepted(source)
    elif response.headers.get("Idempotent-Replayed") == "true":
        metrics.record_trigger_replayed(source)
    elif response.status_code >= 400:
        reason = g.get("refusal_reason") or g.get("error_code") or str(response.status_code)
        metrics.record_trigger_refused(source, reason)
    return response


def _workflow_id_from_body() -> str:
    data = read_json()
    workflow_id = data.get("workflow_id") if isinstance(data, dict) else None
    if isinstance(workflow_id, str) and workflow_id:
        return workflow_id
    problem = {
        "code": "missing",
        "path": "workflow_id",
        "message": "name the workflow in the X-Workflow-Id header or the body's workflow_id",
    }
    raise ApiError(422, "validation_failed", "invalid fields: workflow_id", {"problems": [problem]})


def _idempotency_key_header() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
        )
    return key
