"""Keep a worker alive through a broker restart: a guard around kombu's Redis transport.

When the broker connection breaks, Celery (5.7, consumer.on_connection_error_after_connected)
first collects the connection's transport, which detaches it, then closes the connection. Closing
the channel restores the unacknowledged messages through that detached transport and raises
AttributeError ("'NoneType' object has no attribute 'hostname'"), which Celery does not expect:
the worker stops for good whenever a task was in flight as Redis went away
(tests/integration/test_service_restart.py found it).

Skipping that restore loses nothing: the messages stay in Redis' unacked set, from which the
visibility timeout restores them, and the pending node_runs in PostgreSQL are republished by the
sweeper anyway (DESIGN.md: Execution 3).
"""

from __future__ import annotations

import logging
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


def install() -> None:
    """Idempotent: wrap QoS.restore_unacked of kombu's Redis transport once per process."""
    redis_transport.QoS.restore_unacked = _restore_unless_detached  # type: ignore[method-assign,assignment]
