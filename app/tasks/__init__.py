"""Celery: `celery -A app.tasks worker` and `celery -A app.tasks beat` load this module."""

from celery.signals import worker_process_init

from app.config import get_settings
from app.tasks.celery_app import NODES_QUEUE, RUNS_QUEUE, make_celery
from app.tasks.runtime import set_runtime

celery = make_celery(get_settings())


@worker_process_init.connect
def _fresh_runtime_after_fork(**_kwargs: object) -> None:
    # One engine per worker process: connections must never cross a fork (Celery's advice).
    set_runtime(None)


__all__ = ["NODES_QUEUE", "RUNS_QUEUE", "celery"]
