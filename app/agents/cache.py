"""The small cache the agent service needs: agent configs, memory windows, per-session locks.

Two implementations of one interface: Redis (production: shared by the front end and every
worker) and an in-process one for standalone mode without Redis (one process holds the front
end and the worker, so a dict behind a lock is shared by both). The cache is never the truth:
PostgreSQL is, and a miss reloads from it.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

import redis

from app.errors import RetryableDriverError

log = logging.getLogger(__name__)

MEMORY_URL = "memory://"


class SessionBusy(RetryableDriverError):
    """Another message to the same session held its lock for longer than we may wait."""


class Cache(Protocol):
    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str, ttl_s: int) -> None: ...

    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> None:
        """Every key starting with `prefix` (an agent's memory when it is deleted)."""

    def read_list(self, key: str) -> list[str]:
        """The list's items; [] when the key is missing."""

    def replace_list(self, key: str, items: list[str], ttl_s: int) -> None:
        """Swap the whole list at once: a reader sees the old one or the new one."""

    def lock(
        self, name: str, ttl_s: float, wait_s: float, owner: str | None = None
    ) -> AbstractContextManager[None]:
        """Hold `name` exclusively; SessionBusy after `wait_s`; released after `ttl_s` at most.
        A lock still held by the same `owner` (a holder that died) is taken over at once."""


class RedisCache:
    """The production cache: one Redis shared by the front end and the workers."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def get(self, key: str) -> str | None:
        value = self.client.get(key)
        return value.decode() if isinstance(value, bytes) else value

    def set(self, key: str, value: str, ttl_s: int) -> None:
        self.client.set(key, value, ex=ttl_s)

    def delete(self, key: str) -> None:
        self.client.delete(key)

    def delete_prefix(self, prefix: str) -> None:
        batch: list[bytes | str] = []
        for key in self.client.scan_iter(match=_glob_escape(prefix) + "*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                self.client.delete(*batch)
                batch = []
        if batch:
            self.client.delete(*batch)

    def read_list(self, key: str) -> list[str]:
        return [item.decode() for item in self.client.lrange(key, 0, -1)]  # type: ignore[union-attr]

    def replace_list(self, key: str, items: list[str], ttl_s: int) -> None:
        with self.client.pipeline(transaction=True) as pipe:  # MULTI/EXEC: all or nothing
            pipe.delete(key)
            if items:
                pipe.rpush(key, *items)
                pipe.expire(key, ttl_s)
            pipe.execute()

    @contextmanager
    def lock(
        self, name: str, ttl_s: float, wait_s: float, owner: str | None = None
    ) -> Iterator[None]:
        lock = self.client.lock(name, timeout=ttl_s, blocking_timeout=wait_s)
        token = owner.encode() if owner is not None else None
        if token is not None and self.client.get(name) == token:
            lock.local.token = token  # ours, left by a worker that died: take it over
            lock.reacquire()
        elif not lock.acquire(token=token):
            raise SessionBusy(f"another message to this session is still running ({wait_s:g}s)")
        try:
            yield
        finally:
            try:
                lock.release()
            except redis.exceptions.LockError:
                log.warning("lock %s expired before it was released", name)


class LocalCache:
    """In-process: for standalone mode, where the front end and the worker share one process."""

    #: Locks are striped: bounded memory however many sessions there are.
    STRIPES = 64

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, tuple[str | list[str], float]] = {}
        self._guard = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(self.STRIPES)]

    def get(self, key: str) -> str | None:
        value = self._live(key)
        return value if isinstance(value, str) else None

    def set(self, key: str, value: str, ttl_s: int) -> None:
        with self._guard:
            self._values[key] = (value, self._clock() + ttl_s)

    def delete(self, key: str) -> None:
        with self._guard:
            self._values.pop(key, None)

    def delete_prefix(self, prefix: str) -> None:
        with self._guard:
            for key in [key for key in self._values if key.startswith(prefix)]:
                del self._values[key]

    def read_list(self, key: str) -> list[str]:
        value = self._live(key)
        return list(value) if isinstance(value, list) else []

    def replace_list(self, key: str, items: list[str], ttl_s: int) -> None:
        with self._guard:
            if items:
                self._values[key] = (list(items), self._clock() + ttl_s)
            else:
                self._values.pop(key, None)

    @contextmanager
    def lock(
        self, name: str, ttl_s: float, wait_s: float, owner: str | None = None
    ) -> Iterator[None]:
        # One process holds every turn here: a dead holder took the lock with it.
        stripe = self._stripes[zlib.crc32(name.encode()) % self.STRIPES]
        if not stripe.acquire(timeout=wait_s):
            raise SessionBusy(f"another message to this session is still running ({wait_s:g}s)")
        try:
            yield
        finally:
            stripe.release()

    def _live(self, key: str) -> str | list[str] | None:
        with self._guard:
            entry = self._values.get(key)
            if entry is None:
                return None
            value, expires_at = entry
            if expires_at <= self._clock():
                del self._values[key]
                return None
            return value


_local_cache = LocalCache()


def make_cache(url: str) -> Cache:
    """Redis for a redis:// URL; the process's one LocalCache for `memory://`."""
    if url == MEMORY_URL:
        return _local_cache
    return RedisCache(redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10))


def _glob_escape(text: str) -> str:
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)
