"""One engine per process and one session factory; data functions take a session argument."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(database_url: str, *, pool_size: int = 5, max_overflow: int = 10) -> Engine:
    """An engine for the backend: pooled PostgreSQL, or SQLite in WAL mode with a busy wait.

    The pool (DUALMCP_DB_POOL_SIZE, DUALMCP_DB_MAX_OVERFLOW) serves every thread of the
    process: no session is open while a driver runs, so a threads worker's claims and
    completions hold a connection for milliseconds each and need far fewer than its threads.
    """
    if database_url.startswith("sqlite"):
        # sqlalchemy.create_engine looked up at each call: OpenTelemetry's instrumentation
        # (app/otel.py) wraps it after this module is imported.
        engine = sqlalchemy.create_engine(database_url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    # No pool_pre_ping: it costs a round trip on every checkout (two per node). After a
    # PostgreSQL restart the first statement on a stale connection fails instead; SQLAlchemy
    # then invalidates the whole pool, the web answers that request 503 + Retry-After, and a
    # node task is retried by Celery (app/tasks/nodes.py), so nothing is lost.
    return sqlalchemy.create_engine(
        database_url, pool_size=pool_size, max_overflow=max_overflow, pool_recycle=3600
    )


def make_claims_engine(database_url: str, *, max_overflow: int = 10) -> Engine | None:
    """An engine for lease claims on PostgreSQL: autocommit (no BEGIN/COMMIT round trips) and
    `synchronous_commit=off` (no fsync wait). Safe only for writes a crash may lose without
    harm; see app/workflows/execution.py lease_node. None on SQLite (claims use the main one)."""
    if database_url.startswith("sqlite"):
        return None
    return sqlalchemy.create_engine(
        database_url,
        isolation_level="AUTOCOMMIT",
        connect_args={"options": "-c synchronous_commit=off"},
        pool_size=2,
        max_overflow=max_overflow,
        pool_recycle=3600,
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def is_postgresql(sessions: Session | sessionmaker[Session]) -> bool:
    """True when the session (or the factory's engine) talks to PostgreSQL: the hot paths
    there use statements SQLite does not have (data-modifying CTEs)."""
    bind = sessions.get_bind() if isinstance(sessions, Session) else sessions.kw.get("bind")
    return bind is not None and bind.dialect.name == "postgresql"


@contextmanager
def each_statement_commits(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session in which, on PostgreSQL, every statement is its own transaction (autocommit:
    no BEGIN or COMMIT round trips; each commit as durable as any). For work whose writes are
    one statement, so nothing needs a transaction around it. Elsewhere (SQLite) one
    transaction, committed at the end of the block."""
    with sessions() as session:
        if is_postgresql(session):
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            yield session
        else:
            with session.begin():
                yield session


@contextmanager
def reads_only(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session for reads alone: on PostgreSQL in autocommit, which saves the BEGIN and
    ROLLBACK round trips and changes nothing visible (under READ COMMITTED each statement takes
    its own snapshot either way). Elsewhere a plain session (no write lock taken)."""
    with sessions() as session:
        if is_postgresql(session):
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    # pysqlite's own transaction handling is off so BEGIN IMMEDIATE below takes the write lock
    # up front: two workers reading then writing the same run would otherwise deadlock.
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin_immediate(connection: object) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")  # type: ignore[attr-defined]
