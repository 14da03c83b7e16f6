"""`dualmcp healthcheck`: the image's HEALTHCHECK, one command for the three roles.

The role comes from `--role` or DUALMCP_ROLE (compose and the Kubernetes manifests set it):
- web: GET /healthz on the local gunicorn answers 200;
- worker: this host's Celery worker answers a ping through the broker (it is consuming);
- beat: the broker answers (beat only publishes; `dualmcp_sweeps_total` shows it works).
Exit 0 when healthy, 1 otherwise, with one line saying why.
"""

from __future__ import annotations

import socket
import urllib.request
from typing import Literal

import redis

from app.config import Settings, get_settings

Role = Literal["web", "worker", "beat"]
ROLES: tuple[Role, ...] = ("web", "worker", "beat")
TIMEOUT_S = 5.0


def check(role: Role, web_port: int = 8000, settings: Settings | None = None) -> str | None:
    """None when healthy, else the reason; `settings` default to the environment's."""
    try:
        if role == "web":
            return _check_web(web_port)
        if role == "worker":
            return _check_worker(settings or get_settings())
        return _check_broker(settings or get_settings())
    except Exception as exc:  # any failure is "unhealthy", said in one line
        return f"{type(exc).__name__}: {exc}"


def _check_web(port: int) -> str | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=TIMEOUT_S) as reply:
        return None if reply.status == 200 else f"/healthz answered {reply.status}"


def _check_worker(settings: Settings) -> str | None:
    # Here, not at the top: only this role needs Celery and app.tasks, a second of imports in a
    # command the container runs every 30 s.
    from app.tasks.celery_app import make_celery

    celery = make_celery(settings)
    node = f"celery@{socket.gethostname()}"
    replies = celery.control.ping(destination=[node], timeout=TIMEOUT_S)
    return None if replies else f"worker {node} did not answer a ping"


def _check_broker(settings: Settings) -> str | None:
    client = redis.Redis.from_url(
        settings.broker_url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S
    )
    try:
        client.ping()
    finally:
        client.close()
    return None
