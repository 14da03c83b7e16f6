"""Admission control (DESIGN.md: Execution 7): refuse new runs at once past a queue-depth limit.

A 503 with Retry-After now is better than an unbounded backlog in which every run finishes late.
An unknown depth (a broker other than Redis, or Redis unreachable) admits: publishing already
survives a broker outage through the outbox, so refusing would only lose triggers.
"""

from __future__ import annotations

import logging

from app.web.context import WebContext, web_context
from app.web.errors import RETRY_AFTER_S, ApiError

log = logging.getLogger(__name__)


def admit_new_run() -> None:
    """Return when a new run may start; raise a 503 `overloaded` ApiError when it may not."""
    if queue_is_full(web_context()):
        raise ApiError(
            503,
            "overloaded",
            "too much work is queued; retry later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )


def queue_is_full(context: WebContext) -> bool:
    """True (and logged) when a new run must wait: also asked outside a request (/mcp tools)."""
    depth = context.queue_depth()
    limit = context.settings.max_queue_depth
    if depth is not None and depth > limit:
        log.warning("refusing a new run: %d queued node messages, limit %d", depth, limit)
        return True
    return False
