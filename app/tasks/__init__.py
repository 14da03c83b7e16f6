"""Celery: `celery -A app.tasks worker` and `celery -A app.tasks beat` load this module."""

from celery.signals import worker_process_init

from app.config import get_settings

# kombu_compat is installed below; shutdown and telemetry are imported for their Celery signal
# receivers (hand-back of running nodes on a warm shutdown; logs and the worker metrics port).
from app.tasks import kombu_compat, shutdown, telemetry  # noqa: F401
from app.tasks.celery_app import AGENTS_QUEUE, NODES_QUEUE, RUNS_QUEUE, make_celery
from app.tasks.runtime import set_runtime

kombu_compat.install()  # a worker survives a Redis restart (app/tasks/kombu_compat.py)
celery = make_celery(get_settings())
# For every thread, not only this one: shared tasks resolve their app per thread, and a web
# request thread would otherwise publish through Celery's default (amqp) app (Flask's Celery
# pattern does the same).
celery.set_default()


@worker_process_init.connect
def _fresh_runtime_after_fork(**_kwargs: object) -> None:
    # One engine per worker process: connections must never cross a fork (Celery's advice).
    set_runtime(None)


__all__ = ["AGENTS_QUEUE", "NODES_QUEUE", "RUNS_QUEUE", "celery"]
