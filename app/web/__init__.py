"""The Flask front end: `gunicorn 'app.web:create_app()'`.

Thin on purpose: views validate, call one service function, publish after commit, and shape
the answer. They never call a driver (DESIGN.md: dependencies point one way).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import Settings, get_settings
from app.models import make_engine, make_session_factory
from app.otel import instrument_flask_app
from app.tasks.agents import CeleryAgentTasks
from app.tasks.celery_app import make_celery
from app.tasks.dispatch import Dispatcher
from app.web import (
    admission,
    agents,
    conversations,
    credentials,
    deliveries,
    demo,
    errors,
    http_metrics,
    mcp_mount,
    metrics,
    ops,
    outbox,
    rate_limits,
    request_id,
    runs,
    triggers,
    ui,
    workflows,
)
from app.web.context import WebContext
from app.web.json_body import BoundedRequest


def create_app(
    test_config: dict[str, Any] | None = None, *, context: WebContext | None = None
) -> Flask:
    """Build the app; tests pass their own `context` (settings, sessions, publisher), and
    without one it is wired from the environment's settings (gunicorn's entry point)."""
    app = Flask(__name__)
    app.request_class = BoundedRequest  # a chunked body past MAX_CONTENT_LENGTH is a 413 too
    context = context or default_context(get_settings())
    app.config.update(
        MAX_CONTENT_LENGTH=context.settings.max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    app.config.from_mapping(test_config or {})
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["dualmcp"] = context

    http_metrics.init_app(app)  # every request timed by route template and status
    instrument_flask_app(app)  # OpenTelemetry, when configured (app/otel.py)
    request_id.init_app(app)  # X-Request-ID in the logs, the answer and the node messages
    errors.init_app(app)
    modules = (ops, metrics, agents, conversations, workflows, credentials, runs, outbox, triggers)
    for module in modules:
        app.register_blueprint(module.bp)
    mcp_mount.init_app(app)  # POST /mcp; its event loop starts on the first request to it
    deliveries.init_app(app)  # GET /api/workflows/<id>/deliveries, and refusals recorded
    rate_limits.init_app(app)  # 429 for a sender (or a workflow) with too many refusals
    ui.init_app(app)  # the pages at /ui (app/web/ui), and / redirecting there
    if hops := context.settings.proxy_hops:  # the sender's address from X-Forwarded-For
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops)  # type: ignore[method-assign]
    # In front of everything: a trigger refused for load costs no hook, body, key or query.
    app.wsgi_app = admission.AdmissionGate(app.wsgi_app, context)  # type: ignore[method-assign]
    if app.config.get("DUALMCP_DEMO"):
        app.register_blueprint(demo.bp)
    return app


def default_context(settings: Settings, celery: Celery | None = None) -> WebContext:
    """Production wiring from `settings`: the configured database, and a Celery app (Redis) for
    publishing, made from the same settings unless one is given (standalone mode shares its
    worker's)."""
    sessions = make_session_factory(make_engine(settings.database_url))
    celery = celery or make_celery(settings)
    dispatcher = Dispatcher(celery, sessions)
    return WebContext(
        settings=settings,
        sessions=sessions,
        publish=dispatcher.publish,
        queue_depth=dispatcher.queue_depth,
        agent_tasks=CeleryAgentTasks(celery),
    )
