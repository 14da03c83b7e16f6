"""OpenTelemetry in the worker's pool children and in beat (app/otel.py), when configured."""

from __future__ import annotations

from typing import Any

from celery import current_app
from celery.signals import beat_init, worker_process_init

from app.otel import configure_tracing
from app.tasks.celery_app import settings_of


@worker_process_init.connect
def _trace_worker_process(**_kwargs: Any) -> None:
    """In each prefork child, after the fork (the exporter's thread would not survive it)."""
    configure_tracing(settings_of(current_app), "worker")


@beat_init.connect
def _trace_beat(sender: Any = None, **_kwargs: Any) -> None:
    configure_tracing(settings_of(sender.app if sender is not None else current_app), "beat")
