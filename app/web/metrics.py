"""GET /metrics: Prometheus exposition of every gunicorn worker's counters (multiprocess mode),
plus gauges read at scrape time: the queue depth and the runs in flight. With
DUALMCP_METRICS_TOKEN set, only a scraper that sends it as a bearer token is answered."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable
from typing import ClassVar

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel
from sqlalchemy import func, select

from app import metrics
from app.models import WorkflowRun
from app.web.api import endpoint
from app.web.context import WebContext, web_context
from app.web.errors import ApiError

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)


class ScrapeTimeGauges(Collector):
    """Values that cost I/O, so they are read when scraped instead of on the hot path."""

    def __init__(self, context: WebContext) -> None:
        self.context = context

    def collect(self) -> Iterable[Metric]:
        depth = self.context.queue_depth()
        if depth is not None:  # unknown (Redis unreachable): no sample rather than a false 0
            yield GaugeMetricFamily(
                "dualmcp_queue_depth", "Node messages waiting in the broker's queues.", depth
            )
        yield GaugeMetricFamily(
            "dualmcp_queue_depth_limit",
            "DUALMCP_MAX_QUEUE_DEPTH: past it new runs are refused with 503.",
            self.context.settings.max_queue_depth,
        )
        active = self._active_runs()
        if active is not None:
            gauge = GaugeMetricFamily(
                "dualmcp_runs_active", "Runs not finished yet, by status.", labels=["status"]
            )
            for status in ("queued", "running"):
                gauge.add_metric([status], active.get(status, 0))
            yield gauge

    def _active_runs(self) -> dict[str, int] | None:
        try:
            with self.context.sessions() as session:
                rows = session.execute(
                    select(WorkflowRun.status, func.count())
                    .where(WorkflowRun.status.in_(("queued", "running")))
                    .group_by(WorkflowRun.status)
                ).all()
        except Exception:
            log.warning("metrics: could not count the runs in flight", exc_info=True)
            return None
        return {status: count for status, count in rows}


class MetricsExposition(BaseModel):
    """Prometheus' text exposition format: every process's counters and the scrape-time gauges."""

    #: The media type the OpenAPI document states for this answer (app/web/openapi.py).
    media_type: ClassVar[str] = "text/plain"

    text: str


@endpoint(
    bp,
    "/metrics",
    summary="Prometheus metrics (text exposition format); a bearer token when "
    "DUALMCP_METRICS_TOKEN is set",
    auth="none",
    responses={200: MetricsExposition, 401: None},
)
def prometheus_metrics() -> ResponseReturnValue:
    context = web_context()
    token = context.settings.metrics_token
    if token is not None and token.get_secret_value():  # empty (compose's default): open
        _require_scrape_token(token.get_secret_value())
    registry = metrics.exposition_registry(ScrapeTimeGauges(context))
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(registry), content_type=content_type)


def _require_scrape_token(token: str) -> None:
    """401 unless `Authorization: Bearer <token>`; compared in constant time."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    matches = hmac.compare_digest(presented.strip().encode(), token.encode())
    if scheme.lower() != "bearer" or not matches:
        raise ApiError(
            401,
            "unauthorized",
            "GET /metrics needs DUALMCP_METRICS_TOKEN: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
