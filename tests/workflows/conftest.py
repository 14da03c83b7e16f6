"""Fast tests of the workflow service, driven the way a worker drives it.

Every test here that uses `sessions` runs on SQLite and on PostgreSQL (the `database` fixture,
tests/conftest.py): the portable path and the one-statement paths must keep the same rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.models import make_claims_engine, make_engine, make_session_factory
from app.safe_http import make_http_client
from app.workflows import NodeRef, save_workflow, start_run
from app.workflows.invoke import execute_node
from tests.conftest import DATABASES


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sessions" in metafunc.fixturenames:
        metafunc.parametrize("database", DATABASES, indirect=True)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        DATABASE_URL=database_url,
        DUALMCP_HTTP_ALLOWLIST="127.0.0.1",
        DUALMCP_LEASE_GRACE_S=0,
        DUALMCP_MAX_REDELIVERIES=2,
    )


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def http(settings: Settings) -> Iterator[httpx.Client]:
    with make_http_client(settings) as client:
        yield client


class Driver:
    """Runs published node messages one at a time, in order, like a single worker would."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        http: httpx.Client,
        claims: sessionmaker[Session] | None = None,
    ) -> None:
        self.sessions, self.settings, self.http, self.claims = sessions, settings, http, claims
        self.queue: list[NodeRef] = []

    def start(self, definition: dict[str, Any], payload: Any = None) -> str:
        with self.sessions.begin() as session:
            save_workflow(session, definition)
            started = start_run(session, definition["workflow_id"], payload or {})
        self.queue.extend(started.to_publish)
        return started.run_id

    def drain(self, limit: int = 100) -> None:
        """Run queued messages, ignoring countdowns (the lease re-checks next_attempt_at)."""
        for _ in range(limit):
            if not self.queue:
                return
            successors = execute_node(
                self.sessions, self.settings, self.http, self.queue.pop(0), claims=self.claims
            )
            self.queue.extend(successors)
        raise AssertionError("the run did not settle")


@pytest.fixture
def worker(
    sessions: sessionmaker[Session], settings: Settings, http: httpx.Client
) -> Iterator[Driver]:
    """On PostgreSQL it claims on an autocommit engine of its own, as a worker process does
    (app/models/session.py make_claims_engine); on SQLite claims use the main engine."""
    claims_engine = make_claims_engine(settings.database_url)
    if claims_engine is None:
        yield Driver(sessions, settings, http)
        return
    yield Driver(sessions, settings, http, make_session_factory(claims_engine))
    claims_engine.dispose()
