"""Fixtures shared by the whole suite: the real services, checked up front.

A missing service fails the tests that need it, naming the service; nothing is skipped.
`make test` starts PostgreSQL and Redis (.ci/services.sh) and exports DATABASE_URL/REDIS_URL.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.orm import Session, sessionmaker

from app.models import Base, make_engine, make_session_factory
from app.models.migrate import upgrade
from app.workflows.store import forget_cached_copies
from tests.http_peer import HttpPeer

#: What the `database` fixture may be. The rules of runs and triggers are written once but run
#: as a general path (SQLite) and as one-statement paths (PostgreSQL): the tests of those rules
#: run on both, so a drift between the two fails the suite (issue 14).
DATABASES = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "both_databases: tests that use the `database` fixture run on SQLite and PostgreSQL",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_databases"
    ):
        metafunc.parametrize("database", DATABASES, indirect=True)


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


class SuiteDatabase:
    """A PostgreSQL database of the suite's own, migrated once, emptied before each test.

    Emptied by one round trip: a DELETE per table, children first, and every sequence back to
    1 (what TRUNCATE ... RESTART IDENTITY promises). A test leaves a few rows, and deleting them
    takes under a millisecond where a TRUNCATE of every table takes ~30 ms (new files for each
    table and index) and a fresh database from a template ~150 ms plus new connections."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = sqlalchemy.create_engine(url, pool_size=1, max_overflow=0)
        with self._engine.connect() as connection:
            present = set(
                connection.scalars(
                    sqlalchemy.text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                        " AND tablename <> 'alembic_version'"
                    )
                )
            )
        children_first = [table.name for table in reversed(Base.metadata.sorted_tables)]
        assert present == set(children_first), "the migrations and the models name other tables"
        self._empty = ";".join(
            [f'DELETE FROM "{name}"' for name in children_first]
            + [
                "SELECT setval(oid, 1, false) FROM pg_class"
                " WHERE relkind = 'S' AND relnamespace = 'public'::regnamespace"
            ]
        )

    def empty(self) -> None:
        """No rows left, and no copy of a row cached by this process under the same URL."""
        with self._engine.begin() as connection:
            # A row lock an earlier test's connection still holds would block the DELETE for
            # good: fail with a lock timeout instead.
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = '10s';{self._empty}")
        forget_cached_copies()

    def dispose(self) -> None:
        self._engine.dispose()


@pytest.fixture(scope="session")
def suite_postgres(postgres_url: str) -> Iterator[SuiteDatabase]:
    """Not `migrated_postgres`: the integration stack's worker, beat and sweeper watch that one
    for the whole session, and would act on (or lose) rows these tests make and delete."""
    name = f"{sqlalchemy.make_url(postgres_url).database}_suite_{os.getpid()}"
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = sqlalchemy.make_url(postgres_url).set(database=name).render_as_string(False)
    try:
        upgrade(url)
        suite = SuiteDatabase(url)
        try:
            yield suite
        finally:
            suite.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated for the session: each test copies it instead of migrating."""
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def database(request: pytest.FixtureRequest) -> str:
    """Which database `database_url` is: SQLite, unless the test is marked both_databases."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def database_url(database: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A migrated database with no rows for this test: a copy of the SQLite template, or the
    suite's PostgreSQL database emptied (tests run one at a time). PostgreSQL is only reached
    by tests that ask for it."""
    if database == "sqlite":
        path = tmp_path / "test.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    suite: SuiteDatabase = request.getfixturevalue("suite_postgres")
    suite.empty()
    return suite.url
