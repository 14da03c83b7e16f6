"""`dualmcp healthcheck`: the image's HEALTHCHECK and the Kubernetes liveness probes, one command
for the three roles.

The role comes from `--role` or DUALMCP_ROLE (compose and the Kubernetes manifests set it):
- web: GET /healthz on the local gunicorn answers 200;
- worker, beat: the heartbeat file the process's own loop touches (app/heartbeat.py) is fresher
  than DUALMCP_HEARTBEAT_MAX_AGE_S.
No check asks the broker: a Redis outage stops no process, so it must restart none (issue 16);
it shows in the metrics instead (docs/operations.md: Metrics and alerts).
Exit 0 when healthy, 1 otherwise, with one line saying why.
"""

from __future__ import annotations

import urllib.request
from typing import Literal

from app.config import Settings, get_settings
from app.heartbeat import staleness

Role = Literal["web", "worker", "beat"]
ROLES: tuple[Role, ...] = ("web", "worker", "beat")
TIMEOUT_S = 5.0


def check(role: Role, web_port: int = 8000, settings: Settings | None = None) -> str | None:
    """None when healthy, else the reason; `settings` default to the environment's."""
    try:
        if role == "web":
            return _check_web(web_port)
        return staleness(settings or get_settings(), role)
    except Exception as exc:  # any failure is "unhealthy", said in one line
        return f"{type(exc).__name__}: {exc}"


def _check_web(port: int) -> str | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=TIMEOUT_S) as reply:
        return None if reply.status == 200 else f"/healthz answered {reply.status}"
