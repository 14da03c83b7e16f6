"""Starting runs over HTTP: signed webhook triggers, and the seed's admin `execute`.

Each request is one transaction (trigger_event + run + entry node_run), published after commit
(DESIGN.md: Execution 1). A repeated idempotency key answers 200 with the first run and
`Idempotent-Replayed: true`; the same key with another body answers 422 (Stripe's rules).
A workflow with a `tool` block has an input schema: a run's input that breaks it is a 422
listing every problem, and nothing is written. The rules and their order are
app/workflows/triggers.py `accept_trigger`'s; a view verifies, calls it, and shapes the answer.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from flask import Blueprint, Response, g, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from app import metrics
from app.engine.schema import RunStatus
from app.errors import NotFound
from app.models import each_statement_commits
from app.web import signatures, webhook_payloads
from app.web.api import endpoint, read_json
from app.web.context import web_context
from app.web.errors import ApiError
from app.web.rate_limits import door_retry_after, rate_limited
from app.workflows import start_run
from app.workflows.store import (
    TriggerTarget,
    get_definition,
    get_trigger_target,
    remembered_trigger_target,
)
from app.workflows.triggers import (
    Delivery,
    IdempotencyKeyReused,
    InputInvalid,
    Source,
    TriggerResult,
    accept_trigger,
    input_schema,
)

log = logging.getLogger(__name__)

bp = Blueprint("triggers", __name__)

#: Longest `Idempotency-Key` header accepted (Stripe's limit).
MAX_IDEMPOTENCY_KEY = 255


class RunAccepted(BaseModel):
    """A run was started (202), or a repeated key found the first run (200, duplicate)."""

    run_id: str
    #: `queued` for a new run; a repeat answers the first run's status as it is now.
    status: RunStatus = "queued"
    status_url: str
    duplicate: bool | None = Field(None, description="true on a replayed idempotency key")


class ExecuteRequest(BaseModel):
    """Start a run of a workflow with this input (the seed's POST /api/workflow/execute)."""

    model_config = ConfigDict(extra="forbid")

    workflow_id: str = Field(min_length=1, max_length=128)
    input: Any = Field(default_factory=dict, description="the run's trigger payload")


#: A delivery's body (app/web/webhook_payloads.py), read once its signature holds.
_DELIVERY: dict[str, Any] = {
    "application/json": {"schema": {"type": ["object", "array"]}},
    "application/x-www-form-urlencoded": {
        "schema": {
            "type": "object",
            "additionalProperties": {
                "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
            },
        }
    },
    "text/plain": {"schema": {"type": "string"}},
}
#: The seed's path reads the workflow id from the JSON body unless X-Workflow-Id names it.
_SEED_DELIVERY: dict[str, Any] = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["workflow_id"],
            "properties": {"workflow_id": {"type": "string", "minLength": 1}},
        }
    }
}

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
    raw_body=_DELIVERY,
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
    raw_body=_SEED_DELIVERY,
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
    # Past the queue-depth limit a trigger never gets here: AdmissionGate (admission.py).
    key = _idempotency_key_header()
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
    # Past the queue-depth limit a trigger never gets here: AdmissionGate (admission.py).
    raw = request.get_data(cache=True)  # the exact bytes the sender signed
    context = web_context()
    signature = _Signature(raw)
    # On PostgreSQL: one statement writes event + run + entry node (app/workflows/triggers.py),
    # after a read of the workflow only when this process holds no current copy of it.
    with _refusals_answered(), each_statement_commits(context.sessions) as session:
        _limit_door(session, workflow_id, signature)
        result = accept_trigger(
            session, workflow_id, source="webhook", verify=signature, check=_WEBHOOK_INPUT
        )
    context.publish(result.to_publish)
    return _answer(result)


#: Rule 3 of accept_trigger: the input schema, with paths into the webhook's body.
_WEBHOOK_INPUT = input_schema("")
#: ... and into execute's body, under `input`.
_EXECUTE_INPUT = input_schema("input")


class _Signature:
    """The request's signature checked against a workflow's trigger settings: accept_trigger's
    `verify`. A success is remembered for the target checked, so the door's check of this
    process's copy (`signed_for`) costs accept_trigger's use of the same copy nothing."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._verified: tuple[TriggerTarget, signatures.Verified] | None = None

    def signed_for(self, target: TriggerTarget) -> bool:
        """Whether the delivery is signed for `target` (CPU only; a refusal is not logged)."""
        return self._verified_for(target, final=False) is not None

    def __call__(self, target: TriggerTarget, *, final: bool) -> Delivery | None:
        """The verified delivery and its body. Not signed for a remembered copy (not `final`):
        None, nothing logged; for a fresh read: the generic 401 (or 403), its reason logged.
        The body's own faults (400, 415, 422) do not depend on the copy: they raise."""
        g.webhook_target, g.webhook_delivery_id = target, None  # the delivery log (deliveries.py)
        verified = self._verified_for(target, final=final)
        if verified is None:
            return None
        g.webhook_delivery_id = verified.idempotency_key  # signed: no refusal limit counts it
        payload = webhook_payloads.read_webhook_payload()  # JSON, a form or text
        return Delivery(verified.idempotency_key, self.raw, payload)

    def _verified_for(self, target: TriggerTarget, *, final: bool) -> signatures.Verified | None:
        if self._verified is not None and self._verified[0] is target:
            return self._verified[1]
        try:
            scheme, secrets = _webhook_config(target)
            verified = _verify(target.workflow_id, scheme, secrets, self.raw, log_refusal=final)
        except ApiError:
            if final:
                raise
            return None
        self._verified = (target, verified)
        return verified


def _limit_door(session: Session, workflow_id: str, signature: _Signature) -> None:
    """Decided before accept_trigger, on this process's copy of the workflow alone: a delivery
    signed for the copy reads no counter (accepted traffic pays nothing); only what the copy
    cannot vouch for pays the refusal limit's one Redis read (app/web/rate_limits.py)."""
    copy = remembered_trigger_target(session, workflow_id)
    if copy is None or not signature.signed_for(copy):
        retry_after = door_retry_after()
        if retry_after is not None:
            _accept_while_limited(session, workflow_id, signature, retry_after, copy)


def _accept_while_limited(
    session: Session,
    workflow_id: str,
    signature: _Signature,
    retry_after: int,
    copy: TriggerTarget | None,
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
            if signature.signed_for(fresh):
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


def _accept(workflow_id: str, key: str, raw: bytes, payload: Any, *, source: Source) -> Response:
    context = web_context()
    with _refusals_answered(), each_statement_commits(context.sessions) as session:
        result = accept_trigger(
            session, workflow_id, key, raw, payload, source=source, check=_EXECUTE_INPUT
        )
    context.publish(result.to_publish)
    return _answer(result)


def _start(workflow_id: str, payload: Any) -> Response:
    context = web_context()
    with _refusals_answered(), context.sessions.begin() as session:
        target = get_trigger_target(session, workflow_id)  # the read start_run makes
        if target.status == "active":  # a paused workflow is left to start_run's Conflict
            _EXECUTE_INPUT(get_definition(session, workflow_id, target.version), payload)
        started = start_run(session, workflow_id, payload, workflow=target)
    context.publish(started.to_publish)
    return _answer(TriggerResult(started.run_id, duplicate=False))


@contextmanager
def _refusals_answered() -> Iterator[None]:
    """accept_trigger's refusals of a body as the API answers them (422); after the block's
    transaction ended, so nothing it wrote is kept."""
    try:
        yield
    except IdempotencyKeyReused as exc:
        raise ApiError(422, "idempotency_key_reused", str(exc)) from None
    except InputInvalid as exc:
        details = {"problems": [problem.to_dict() for problem in exc.problems]}
        raise ApiError(422, "validation_failed", str(exc), details) from None


def _answer(result: TriggerResult) -> Response:
    status_url = f"/api/runs/{result.run_id}"
    body = RunAccepted(
        run_id=result.run_id,
        status=cast(RunStatus, result.status),
        status_url=status_url,
        duplicate=result.duplicate or None,
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
