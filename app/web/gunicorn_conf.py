"""gunicorn settings for the front end, loaded with `-c python:app.web.gunicorn_conf`.

Command-line flags and GUNICORN_CMD_ARGS set the rest (`--bind 0.0.0.0:8000`; WEB_CONCURRENCY
sets the worker count) and win over what is here. What this adds: the worker class, its threads
and keep-alive (one place, so compose, Kubernetes, the docs and the bench agree), the project's
log format for gunicorn's own lines and the access log, the longest request line, and the hooks
multiprocess metrics need (PROMETHEUS_MULTIPROC_DIR).
"""

from __future__ import annotations

import os
from typing import Any

from app import metrics
from app.config import get_settings
from app.logs import logging_config
from app.otel import configure_tracing
from app.startup_checks import enforce
from app.web import serving

# No start without DUALMCP_ENCRYPTION_KEY (and loud warnings for the examples' secrets).
enforce(get_settings(), "web")
logconfig_dict = logging_config(get_settings())
accesslog = "-"
# gunicorn's default access line, plus the answer's X-Request-ID (app/web/request_id.py): the
# access line is written after the request's log context is gone.
access_log_format = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %({x-request-id}o)s'
)
# Heartbeat files on tmpfs: an overlay filesystem can stall them and get workers killed.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# The longest request line gunicorn takes (its own maximum; the default is 4094): a longer
# path gets gunicorn's HTML 414 instead of the API's JSON 404 (issue 13).
limit_request_line = 8190
# Threads and keep-alive, not sync workers (app/web/serving.py says why).
worker_class = serving.WORKER_CLASS
threads = serving.THREADS
keepalive = serving.KEEPALIVE_S
# A request outliving this is a bug (triggers only enqueue); SIGTERM waits as long.
timeout = 30
graceful_timeout = 30


def on_starting(_server: Any) -> None:
    """In the master, before any worker forks: drop an earlier run's metric files."""
    metrics.reset_multiprocess_dir()


def post_fork(_server: Any, _worker: Any) -> None:
    """In each worker, before it loads the app: OpenTelemetry when configured (app/otel.py)."""
    configure_tracing(get_settings(), "web")


def child_exit(_server: Any, worker: Any) -> None:
    metrics.mark_process_dead(worker.pid)
