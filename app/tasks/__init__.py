"""Celery: `celery -A app.tasks worker` and `celery -A app.tasks beat` load this module.

Importing it makes no Celery app. Celery's `-A app.tasks` looks up `app.tasks.celery`, which is
made then from the environment's settings (`process_celery`): the worker's entry point. Standalone
mode makes its own with `make_celery(settings)` instead.
"""

from celery import Celery
from celery.signals import worker_process_init

# kombu_compat is installed below; role_checks, shutdown, telemetry and tracing are imported for
# their Celery signal receivers (no start without an encryption key; hand-back of running nodes on
# a warm shutdown; logs and the worker metrics port; OpenTelemetry when configured).
from app.tasks import kombu_compat, role_checks, shutdown, telemetry, tracing  # noqa: F401
from app.tasks.celery_app import AGENTS_QUEUE, NODES_QUEUE, RUNS_QUEUE, SLOW_QUEUE, process_celery
from app.tasks.runtime import set_runtime

kombu_compat.install()  # a worker survives a Redis restart (app/tasks/kombu_compat.py)


def __getattr__(name: str) -> Celery:
    """`app.tasks.celery`: the process's Celery app, made on first access (PEP 562)."""
    if name == "celery":
        return process_celery()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@worker_process_init.connect
def _fresh_runtime_after_fork(**_kwargs: object) -> None:
    # One engine per worker process: connections must never cross a fork (Celery's advice).
    set_runtime(None)


__all__ = ["AGENTS_QUEUE", "NODES_QUEUE", "RUNS_QUEUE", "SLOW_QUEUE", "celery"]
