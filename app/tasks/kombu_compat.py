"""Two fixes to kombu's Redis transport (5.7): survive a broker restart, and publish cheaply.

1. Survive a broker restart.

When the broker connection breaks, Celery (5.7, consumer.on_connection_error_after_connected)
first collects the connection's transport, which detaches it, then closes the connection. Closing
the channel restores the unacknowledged messages through that detached transport and raises
AttributeError ("'NoneType' object has no attribute 'hostname'"), which Celery does not expect:
the worker stops for good whenever a task was in flight as Redis went away
(tests/integration/test_service_restart.py found it).

Skipping that restore loses nothing: the messages stay in Redis' unacked set, from which the
visibility timeout restores them, and the pending node_runs in PostgreSQL are republished by the
sweeper anyway (DESIGN.md: Execution 3).

2. One Redis client per channel. `Channel.conn_or_acquire()` builds a new `redis.Redis` for
every publish and every ack, and building one is costly (it fills a table of response callbacks;
bench/README.md, Notes). The client holds no connection of its own (it takes one from the
channel's pool per command) and is thread-safe, so the channel keeps the first one it builds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as redis_transport

log = logging.getLogger(__name__)

_restore_unacked = redis_transport.QoS.restore_unacked


def _restore_unless_detached(qos: Any, client: Any = None) -> Any:
    transport = getattr(qos.channel, "connection", None)
    if client is None and getattr(transport, "client", None) is None:
        log.warning(
            "broker connection lost with %d message(s) unacknowledged; they stay in Redis "
            "until the visibility timeout, and the sweeper republishes their nodes",
            len(qos._delivered),
        )
        return None
    return _restore_unacked(qos, client)


@contextmanager
def _conn_or_acquire(channel: Any, client: Any = None) -> Iterator[Any]:
    if client:
        yield client
        return
    reused = channel.__dict__.get("_dualmcp_client")
    if reused is None:
        reused = channel.__dict__["_dualmcp_client"] = channel._create_client()
    yield reused


def install() -> None:
    """Idempotent: patch kombu's Redis transport once per process."""
    redis_transport.QoS.restore_unacked = _restore_unless_detached  # type: ignore[method-assign,assignment]
    redis_transport.Channel.conn_or_acquire = _conn_or_acquire  # type: ignore[method-assign,assignment]
