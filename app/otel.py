"""OpenTelemetry traces, an optional extra: `pip install 'dualmcp[otel]'`.

With OTEL_EXPORTER_OTLP_ENDPOINT set, each role traces Flask requests, Celery publishes and
tasks, SQLAlchemy statements and httpx calls with the official instrumentations, and exports the
spans over OTLP (http/protobuf). The Celery instrumentation carries the trace context in each
message's headers, so a trigger and every node of the run it starts share one trace. Without the
setting nothing of OpenTelemetry is imported, and the default install does not have it.

Called once per process after the fork (gunicorn's post_fork, Celery's worker_process_init and
beat_init): the exporter's thread does not survive a fork.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from app.config import Settings

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

#: The OTLP/HTTP path for traces under the endpoint (the SDK's own rule for the base variable).
TRACES_PATH = "/v1/traces"

_configured = False


def configure_tracing(settings: Settings, role: str) -> bool:
    """Trace this process (`role`: web, worker, beat) when an endpoint is set; True if it is
    traced. A missing extra is a warning, not a failed start."""
    global _configured
    if _configured or not settings.otel_exporter_otlp_endpoint:
        return _configured
    try:
        _install(settings.otel_exporter_otlp_endpoint, role)
    except ImportError:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed "
            "(pip install 'dualmcp[otel]'): no traces"
        )
        return False
    _configured = True
    log.info("tracing to %s as dualmcp-%s", settings.otel_exporter_otlp_endpoint, role)
    return True


def instrument_flask_app(app: Flask) -> None:
    """Trace the app's requests, when this process traces (create_app calls it)."""
    if _configured:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor  # optional extra

        FlaskInstrumentor.instrument_app(app)  # type: ignore[no-untyped-call]


def _install(endpoint: str, role: str) -> None:
    # Imported here, not at the top: the extra is optional, and a process without the
    # setting must not pay for (or need) these packages.
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, win over this name.
    provider = TracerProvider(resource=Resource.create({"service.name": f"dualmcp-{role}"}))
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + TRACES_PATH)
    provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_* tune it
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument()  # type: ignore[no-untyped-call]  # web and workers
    # skip_dep_check: its declared range (<2.1) lags SQLAlchemy; the event API it uses is stable.
    SQLAlchemyInstrumentor().instrument(skip_dep_check=True)  # engines made after this
    HTTPXClientInstrumentor().instrument()
