"""Limits on the unauthenticated door (issue 13, section 4): refused webhook deliveries per
source address and per workflow, in fixed windows of DUALMCP_WEBHOOK_REFUSAL_WINDOW_S.

Only refusals of requests whose signature did not hold count (a bad or missing signature, a
workflow that takes no webhooks or does not exist, a body too large to read): a signed sender is
never counted, so accepted traffic never uses up a limit. The trigger view first checks the
signature against its process's copy of the workflow (CPU only); only what that copy does not
vouch for reads the counters. Once an address, or a workflow, had its limit of refusals in the
current window, such a request is answered 429 with Retry-After without a database read
(app/web/triggers.py `_accept_while_limited`): well-signed traffic is never limited, and a
flood costs one HMAC and one Redis read per request.

Cost: one MGET of the two counters per webhook request the process's copy does not vouch for
(none for a delivery signed for it), and for a counted refusal one pipelined INCR + EXPIRE per
counter (one round trip; plain commands, no script to load). Counters live in
the broker's Redis, through the client the web context already has: the web needs that Redis to
publish anyway, and a fixed window needs no clock but Redis keys named by window. With an
in-memory broker (standalone) they are kept in the process. When Redis fails the door stays open
(no limit) for FAIL_OPEN_S, with one warning per outage.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import redis
from flask import Flask, Response, current_app, g, request

from app.config import Settings
from app.web.context import WebContext
from app.web.deliveries import delivery_verified, on_webhook_door, source_address
from app.web.errors import ApiError

log = logging.getLogger(__name__)

#: Seconds the limiter stays off after Redis failed, before it tries again.
FAIL_OPEN_S = 10.0
KEY_PREFIX = "dualmcp:webhook-refusals"
#: Workflow ids a workflow may have (app/engine/schema.py); other ids get no counter of their own.
_WORKFLOW_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


class RefusalCounters(Protocol):
    """Counters that expire: Redis, or the process's own memory."""

    def read(self, keys: Sequence[str]) -> list[int]: ...

    def add(self, keys: Sequence[str], ttl_s: int) -> list[int]: ...


class RedisCounters:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def read(self, keys: Sequence[str]) -> list[int]:
        return [int(value or 0) for value in self.client.mget(list(keys))]

    def add(self, keys: Sequence[str], ttl_s: int) -> list[int]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.incr(key)
            pipe.expire(key, ttl_s)
        return [int(count) for count in pipe.execute()[::2]]


class LocalCounters:
    """The same in one process (standalone mode, an in-memory broker)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._counts: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def read(self, keys: Sequence[str]) -> list[int]:
        now = self.clock()
        with self._lock:
            return [count if until > now else 0 for count, until in map(self._get, keys)]

    def add(self, keys: Sequence[str], ttl_s: int) -> list[int]:
        now = self.clock()
        with self._lock:
            if len(self._counts) > 10_000:
                self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
            counts = []
            for key in keys:
                count, until = self._get(key)
                count = count + 1 if until > now else 1
                self._counts[key] = (count, now + ttl_s)
                counts.append(count)
            return counts

    def _get(self, key: str) -> tuple[int, float]:
        return self._counts.get(key, (0, 0.0))


class RefusalLimiter:
    """Fixed windows of refusals per address and per workflow; fails open."""

    def __init__(
        self,
        counters: RefusalCounters,
        *,
        per_address: int,
        per_workflow: int,
        window_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.counters = counters
        self.per_address, self.per_workflow = per_address, per_workflow
        self.window_s = window_s
        self.clock = clock
        self._open_until = 0.0
        self._failing = False

    def retry_after(self, address: str, workflow_id: str | None) -> int | None:
        """Seconds until the window ends when the address or the workflow had its limit of
        refusals in it; None otherwise, or when the counters cannot be read (fail open)."""
        now = self.clock()
        limited = self._limited(address, workflow_id, now)
        if not limited:
            return None
        counts = self._guarded(lambda: self.counters.read([key for key, _ in limited]))
        limits = [limit for _, limit in limited]
        if counts is None or all(n < limit for n, limit in zip(counts, limits, strict=True)):
            return None
        return max(1, math.ceil(self._window_end(now) - now))

    def count(self, address: str, workflow_id: str | None) -> None:
        """One more refusal for the address (and the workflow, when named)."""
        now = self.clock()
        limited = self._limited(address, workflow_id, now)
        if not limited:
            return
        ttl = math.ceil(self._window_end(now) - now) + 1
        counts = self._guarded(lambda: self.counters.add([key for key, _ in limited], ttl))
        for n, (key, limit) in zip(counts or [0] * len(limited), limited, strict=True):
            if n == limit:  # once per window and key, whichever process crossed it
                log.warning(
                    "webhook door: %d refused deliveries in %d s (%s); answering 429 until the "
                    "window ends",
                    limit,
                    self.window_s,
                    key.removeprefix(KEY_PREFIX + ":").partition(":")[2],
                )

    def _limited(self, address: str, workflow_id: str | None, now: float) -> list[tuple[str, int]]:
        window = int(now // self.window_s)
        keys = []
        if self.per_address:
            keys.append((f"{KEY_PREFIX}:{window}:address:{address}", self.per_address))
        if self.per_workflow and workflow_id and _WORKFLOW_ID.match(workflow_id):
            keys.append((f"{KEY_PREFIX}:{window}:workflow:{workflow_id}", self.per_workflow))
        return keys

    def _window_end(self, now: float) -> float:
        return (int(now // self.window_s) + 1) * self.window_s

    def _guarded(self, call: Callable[[], list[int]]) -> list[int] | None:
        if self.clock() < self._open_until:
            return None
        try:
            result = call()
        except (redis.RedisError, OSError) as exc:
            self._open_until = self.clock() + FAIL_OPEN_S
            if not self._failing:
                self._failing = True
                log.warning(
                    "webhook refusal limits are off: Redis failed (%s); retrying every %.0f s",
                    type(exc).__name__,
                    FAIL_OPEN_S,
                )
            return None
        if self._failing:
            self._failing = False
            log.info("webhook refusal limits are on again")
        return result


def make_limiter(context: WebContext) -> RefusalLimiter:
    """Counters in the broker's Redis (an in-memory broker: in the process)."""
    settings: Settings = context.settings
    redis_broker = settings.broker_url.split("://", 1)[0] in ("redis", "rediss", "unix")
    counters = RedisCounters(context.broker_redis) if redis_broker else LocalCounters()
    return RefusalLimiter(
        counters,
        per_address=settings.webhook_refusals_per_address,
        per_workflow=settings.webhook_refusals_per_workflow,
        window_s=settings.webhook_refusal_window_s,
    )


def init_app(app: Flask) -> None:
    """Count a webhook view's refusal after it answered (the view reads the limits itself)."""
    app.extensions["dualmcp.refusal_limiter"] = make_limiter(app.extensions["dualmcp"])
    app.after_request(_count_refusal)


def _limiter() -> RefusalLimiter:
    limiter: RefusalLimiter = current_app.extensions["dualmcp.refusal_limiter"]
    return limiter


def _named_workflow() -> str | None:
    """The workflow the request names before its body is read: the path, or X-Workflow-Id."""
    named = (request.view_args or {}).get("workflow_id") or request.headers.get("X-Workflow-Id")
    return str(named) if named else None


def door_retry_after() -> int | None:
    """Seconds until the window ends when the request's address (or its workflow) is past its
    limit of refusals, else None: one Redis read. The trigger view asks only for a delivery its
    process's copy of the workflow does not vouch for, so accepted traffic pays nothing."""
    return _limiter().retry_after(source_address(), _named_workflow())


def rate_limited(retry_after: int) -> ApiError:
    """The 429 a request past the refusal limit gets when it could not be verified cheaply."""
    return ApiError(
        429,
        "rate_limited",
        "too many refused deliveries; retry later",
        headers={"Retry-After": str(retry_after)},
    )


def _count_refusal(response: Response) -> Response:
    status = response.status_code
    if not 400 <= status < 500 or status == 429 or not on_webhook_door() or delivery_verified():
        return response
    target = g.get("webhook_target")  # only a workflow that exists gets its own counter
    _limiter().count(source_address(), target.workflow_id if target is not None else None)
    return response
