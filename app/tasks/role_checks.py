"""The worker and beat refuse to start without what production needs (app/startup_checks.py),
before they consume or publish anything."""

from __future__ import annotations

from typing import Any

from celery import current_app
from celery.signals import beat_init, worker_init

from app.startup_checks import enforce
from app.tasks.celery_app import settings_of


@worker_init.connect
def _check_worker(sender: Any = None, **_kwargs: Any) -> None:
    """In the worker's main process, before the pool forks. A SystemExit passes through
    Celery's signal dispatch (it catches only Exception), so the worker stops here."""
    enforce(settings_of(sender.app if sender is not None else current_app), "worker")


@beat_init.connect
def _check_beat(sender: Any = None, **_kwargs: Any) -> None:
    enforce(settings_of(sender.app if sender is not None else current_app), "beat")
