"""What a worker or beat process shows ops: its logs (app/logs.py) and, on a worker, a
Prometheus port (`DUALMCP_WORKER_METRICS_PORT`) serving what its prefork children counted."""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from celery.signals import setup_logging, worker_init
from prometheus_client import start_http_server

from app import metrics
from app.logs import configure_logging
from app.tasks.celery_app import settings_of

log = logging.getLogger(__name__)


@setup_logging.connect
def _configure_logging(loglevel: int | str | None = None, **_kwargs: Any) -> None:
    """Replaces Celery's logging setup (worker, beat and each pool child): ours has the JSON
    format, the run/node context and the redaction. `--loglevel` wins over DUALMCP_LOG_LEVEL."""
    configure_logging(settings_of(current_app), loglevel or None)


@worker_init.connect
def _serve_worker_metrics(sender: Any = None, **_kwargs: Any) -> None:
    """In the worker's main process, before the pool forks its children."""
    settings = settings_of(sender.app if sender is not None else current_app)
    if not settings.worker_metrics_port:
        return
    if not metrics.is_multiprocess():
        log.warning(
            "PROMETHEUS_MULTIPROC_DIR is not set: the metrics port shows this process only, "
            "not the prefork children that run the nodes"
        )
    metrics.reset_multiprocess_dir()
    start_http_server(
        settings.worker_metrics_port,
        addr=settings.worker_metrics_addr,
        registry=metrics.exposition_registry(),
    )
    log.info(
        "worker metrics on http://%s:%d/metrics",
        settings.worker_metrics_addr,
        settings.worker_metrics_port,
    )
