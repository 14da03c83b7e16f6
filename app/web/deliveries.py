"""The webhook delivery log over HTTP, and the hook that writes its refused half.

GET /api/workflows/<id>/deliveries lists a workflow's last deliveries, accepted and refused
(app/workflows/deliveries.py). Refusals are written by one `after_request` hook, from what the
trigger views leave in `g` (app/web/triggers.py: `webhook_target` once the workflow is read,
`webhook_delivery_id` once the signature holds), in an autocommit statement of its own after
the answer is decided. Nothing is written for an accepted delivery (its trigger_event is the
record), for a 429 of the refusal limiter, or before the workflow was read (unknown workflow,
body too large): those are counted in /metrics only. Under a flood at most
MAX_RECORDED_PER_S refusals per workflow per second are written by each web process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import cache
from typing import Annotated

from flask import Blueprint, Flask, Response, current_app, g, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session, sessionmaker

from app.models import each_statement_commits, reads_only
from app.web.api import ENDPOINTS, endpoint
from app.web.context import web_context
from app.web.schemas import IsoTime, page_cursor, respond
from app.workflows.deliveries import (
    Refusal,
    decode_delivery_cursor,
    list_deliveries,
    prune_refusals,
    record_refusal,
)
from app.workflows.store import TriggerTarget

log = logging.getLogger(__name__)

bp = Blueprint("deliveries", __name__)

#: Refusals per workflow per second one web process writes; the rest are only counted.
MAX_RECORDED_PER_S = 10
#: Seconds between two prunes of old refusals by one web process (done at insert time).
PRUNE_EVERY_S = 300.0
#: Seconds between two warnings about refusals that could not be written.
WARN_EVERY_S = 60.0

#: Where each scheme's sender names its delivery, read for a refusal whose signature did not
#: hold (the verified key is used otherwise). Stripe's is in the body, Slack gives none.
CLAIMED_ID_HEADERS = {
    "standard": "webhook-id",
    "github": "x-github-delivery",
    "twilio": "i-twilio-idempotency-token",
    "token": "idempotency-key",
}


class DeliveriesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(50, ge=1, le=200)
    #: `next_cursor` of the previous page.
    cursor: Annotated[str | None, page_cursor(decode_delivery_cursor)] = None


class DeliveryOut(BaseModel):
    """One delivery to the workflow's webhook: accepted (202, with its run) or refused."""

    received_at: IsoTime
    #: The HTTP status answered: 202 for an accepted delivery (a replay is not listed again).
    status: int
    #: Why it was refused: missing, malformed, mismatch, stale, future (the signature),
    #: not_enabled, paused, invalid_body, idempotency_key_reused, ...; null when accepted.
    reason: str | None = None
    #: The trigger's signature scheme.
    scheme: str | None = None
    #: The idempotency key as the sender gave it (unverified on a refused signature).
    delivery_id: str | None = None
    run_id: str | None = None
    #: The sender's address, for refusals (request.remote_addr; see DUALMCP_PROXY_HOPS).
    source_address: str | None = None


class DeliveryPage(BaseModel):
    """Deliveries of the last DUALMCP_DELIVERY_LOG_DAYS, newest first; pass `next_cursor` back
    as `cursor` for the next page."""

    deliveries: list[DeliveryOut]
    next_cursor: str | None = None


@endpoint(
    bp,
    "/api/workflows/<workflow_id>/deliveries",
    summary="The last deliveries to a workflow's webhook, accepted and refused, newest first",
    query=DeliveriesQuery,
    responses={200: DeliveryPage, 404: None},
)
def workflow_deliveries(workflow_id: str, query: DeliveriesQuery) -> ResponseReturnValue:
    context = web_context()
    with reads_only(context.sessions) as session:
        deliveries, next_cursor = list_deliveries(
            session,
            workflow_id,
            days=context.settings.delivery_log_days,
            limit=query.limit,
            cursor=query.cursor,
        )
    return respond(DeliveryPage, {"deliveries": deliveries, "next_cursor": next_cursor})


class RefusalLog:
    """Writes refused deliveries, each in its own short statement (autocommit on PostgreSQL),
    sampled per workflow, pruning old ones at insert time; never raises."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        days: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.days = days
        self.clock = clock
        self._lock = threading.Lock()
        self._this_second: dict[str, tuple[int, int]] = {}
        self._pruned_at: float | None = None
        self._warned_at: float | None = None

    def record(self, refusal: Refusal) -> bool:
        """True when the refusal was written; False when sampled out or the write failed."""
        if not self._admit(refusal.workflow_id):
            return False
        prune = self._prune_due()
        try:
            with each_statement_commits(self.sessions) as session:
                record_refusal(session, refusal)
                if prune:
                    prune_refusals(session, days=self.days)
        except Exception as exc:  # a refusal's record must never turn its answer into a 500
            self._warn(exc)
            return False
        return True

    def _admit(self, workflow_id: str) -> bool:
        second = int(self.clock())
        with self._lock:
            if len(self._this_second) > 4096:
                self._this_second.clear()
            at, count = self._this_second.get(workflow_id, (second, 0))
            count = count + 1 if at == second else 1
            self._this_second[workflow_id] = (second, count)
        return count <= MAX_RECORDED_PER_S

    def _prune_due(self) -> bool:
        now = self.clock()
        with self._lock:
            if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY_S:
                return False
            self._pruned_at = now
        return True

    def _warn(self, exc: Exception) -> None:
        now = self.clock()
        if self._warned_at is None or now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning("could not record a refused webhook delivery: %s", type(exc).__name__)


def init_app(app: Flask) -> None:
    """Register the blueprint and the hook that records refused deliveries."""
    context = app.extensions["dualmcp"]
    app.extensions["dualmcp.refusal_log"] = RefusalLog(
        context.sessions, context.settings.delivery_log_days
    )
    app.register_blueprint(bp)
    app.after_request(_record_refused_delivery)


def _record_refused_delivery(response: Response) -> Response:
    if response.status_code < 400 or response.status_code == 429 or not on_webhook_door():
        return response
    target: TriggerTarget | None = g.get("webhook_target")
    if target is None:  # refused before the workflow was read: nothing to attach it to
        return response
    refusal_log: RefusalLog = current_app.extensions["dualmcp.refusal_log"]
    scheme = trigger_scheme(target)
    refusal_log.record(
        Refusal(
            workflow_id=target.workflow_id,
            status=response.status_code,
            reason=refusal_reason(response.status_code, target),
            scheme=scheme,
            delivery_id=g.get("webhook_delivery_id") or claimed_delivery_id(scheme),
            source_address=source_address(),
        )
    )
    return response


def on_webhook_door() -> bool:
    """True for a request to an endpoint that takes a signature instead of an API key."""
    rule = request.url_rule
    return rule is not None and (rule.rule, request.method) in _signature_rules()


@cache
def _signature_rules() -> frozenset[tuple[str, str]]:
    # Read at the first request, once every blueprint has declared its endpoints.
    return frozenset((point.rule, point.method) for point in ENDPOINTS if point.auth == "signature")


def delivery_verified() -> bool:
    """True once the trigger view found the delivery signed (it set `webhook_delivery_id`)."""
    return g.get("webhook_delivery_id") is not None


def source_address() -> str:
    """The sender as the front end sees it: the peer, or the address DUALMCP_PROXY_HOPS
    trusted proxies forwarded (werkzeug's ProxyFix, app/web/__init__.py)."""
    return (request.remote_addr or "unknown")[:64]


def trigger_scheme(target: TriggerTarget) -> str | None:
    config = target.trigger_config or {}
    if config.get("type") != "webhook":
        return None
    scheme = config.get("scheme") or "standard"
    return str(scheme)


def claimed_delivery_id(scheme: str | None) -> str | None:
    header = CLAIMED_ID_HEADERS.get(scheme or "")
    return (request.headers.get(header) or None) if header else None


def refusal_reason(status: int, target: TriggerTarget) -> str:
    """The log's reason: the signature's own (missing, malformed, mismatch, stale, future), or
    what the answer's error code says, named for a person reading the log."""
    refused = str(g.get("refusal_reason") or "")  # "invalid_signature:<reason>" (triggers.py)
    code = str(g.get("error_code") or "")
    if refused.startswith("invalid_signature:"):
        return refused.partition(":")[2]
    if code == "webhook_not_enabled":
        return "not_enabled"
    if status == 409 and target.status != "active":
        return str(target.status)  # paused
    if delivery_verified() and status in (400, 413, 415, 422) and code != "idempotency_key_reused":
        return "invalid_body"
    return code or "unknown"
