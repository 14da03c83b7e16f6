"""A broker connection that breaks with a message in flight must not stop the worker
(app/tasks/kombu_compat.py): closing it after Celery collected its transport is harmless."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kombu import Connection
from kombu.transport import redis as redis_transport

from app.tasks import kombu_compat


@pytest.fixture
def broken_connection(redis_url: str) -> Iterator[Connection]:
    """What Celery's consumer holds after `collect()`: a channel with an unacknowledged message
    whose transport has been detached."""
    connection = Connection(redis_url)
    connection.default_channel.qos._delivered["in-flight"] = object()
    connection.transport.client = None
    yield connection


def test_kombu_alone_raises_attribute_error(
    broken_connection: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug itself: if this starts passing, kombu is fixed and the guard can go."""
    monkeypatch.setattr(redis_transport.QoS, "restore_unacked", kombu_compat._restore_unacked)
    with pytest.raises(AttributeError, match="hostname"):
        broken_connection.close()


def test_with_the_guard_the_connection_closes_quietly(broken_connection: Connection) -> None:
    kombu_compat.install()
    broken_connection.close()
