"""The Flask front end: `gunicorn 'app.web:create_app()'`.

Thin on purpose: views validate, call one service function, publish after commit, and shape
the answer. They never call a driver (DESIGN.md: dependencies point one way).
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import Settings, get_settings
from app.web.context import WebContext
from app.web.json_body import BoundedRequest


def create_app(
    test_config: dict[str, Any] | None = None, *, context: WebContext | None = None
) -> Flask:
    """Build the app; tests pass their own `context` (settings, sessions, publisher)."""
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

    from app.web import (
        agents,
        conversations,
        credentials,
        deliveries,
        errors,
        mcp_mount,
        metrics,
        ops,
        outbox,
        rate_limits,
        runs,
        triggers,
        workflows,
    )

    errors.init_app(app)
    modules = (ops, metrics, agents, conversations, workflows, credentials, runs, outbox, triggers)
    for module in modules:
        app.register_blueprint(module.bp)
    mcp_mount.init_app(app)  # POST /mcp; its event loop starts on the first request to it
    deliveries.init_app(app)  # GET /api/workflows/<id>/deliveries, and refusals recorded
    rate_limits.init_app(app)  # 429 for a sender (or a workflow) with too many refusals
    if hops := context.settings.proxy_hops:  # the sender's address from X-Forwarded-For
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops)  # type: ignore[method-assign]
    if app.config.get("DUALMCP_DEMO"):
        from app.web import demo

        app.register_blueprint(demo.bp)
    return app


def default_context(settings: Settings) -> WebContext:
    """Production wiring: the configured database, and Celery (Redis) for publishing."""
    from app.models import make_engine, make_session_factory
    from app.tasks.agents import CeleryAgentTasks
    from app.tasks.dispatch import publish, queue_depth

    return WebContext(
        settings=settings,
        sessions=make_session_factory(make_engine(settings.database_url)),
        publish=publish,
        queue_depth=queue_depth,
        agent_tasks=CeleryAgentTasks(),
    )
