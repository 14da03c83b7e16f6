"""Fixtures shared by the whole suite: the real services, checked up front.

A missing service fails the tests that need it, naming the service; nothing is skipped.
`make test` starts PostgreSQL and Redis (.ci/services.sh) and exports DATABASE_URL/REDIS_URL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import sqlalchemy
from sqlalchemy.orm import Session, sessionmaker

from app.models import make_engine, make_session_factory
from app.models.migrate import upgrade
from tests.http_peer import HttpPeer


def _required_env(name: str, service: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        pytest.fail(
            f"{service} is required: {name} is not set. Run the suite with `make test`, which "
            f"starts PostgreSQL and Redis on loopback and exports their URLs.",
            pytrace=False,
        )
    return value


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The real PostgreSQL of this test session; fails (never skips) when unreachable."""
    url = _required_env("DATABASE_URL", "PostgreSQL")
    if not url.startswith("postgresql"):
        pytest.fail(f"DATABASE_URL must name PostgreSQL for these tests, got {url.split(':')[0]}")
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except Exception as exc:
        pytest.fail(f"PostgreSQL at DATABASE_URL is not reachable: {exc}", pytrace=False)
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis of this test session; fails (never skips) when unreachable."""
    url = _required_env("REDIS_URL", "Redis")
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except Exception as exc:
        pytest.fail(f"Redis at REDIS_URL is not reachable: {exc}", pytrace=False)
    finally:
        client.close()
    return url


@pytest.fixture(scope="session")
def migrated_postgres(postgres_url: str) -> str:
    """A clean schema for this session, built by the Alembic migrations (not create_all)."""
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("DROP SCHEMA public CASCADE"))
        connection.execute(sqlalchemy.text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(postgres_url)
    return postgres_url


@pytest.fixture
def pg_engine(migrated_postgres: str) -> Iterator[sqlalchemy.Engine]:
    """An engine on the session's PostgreSQL, made as the app makes its own."""
    engine = make_engine(migrated_postgres)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_sessions(pg_engine: sqlalchemy.Engine) -> sessionmaker[Session]:
    return make_session_factory(pg_engine)


@pytest.fixture(scope="session")
def http_peer() -> Iterator[HttpPeer]:
    """One real HTTP server on 127.0.0.1 for the session; tests use their own paths."""
    with HttpPeer() as peer:
        yield peer
