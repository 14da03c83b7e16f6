"""The Flask app on SQLite with a recording publisher: fast tests of the HTTP contract.

The end-to-end tests through gunicorn, a real worker, PostgreSQL and Redis live in
tests/integration; these check status codes, shapes and auth without any service.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.models import make_engine, make_session_factory
from app.models.migrate import upgrade
from app.web import create_app
from app.web.context import WebContext
from app.workflows.runs import NodeRef

ADMIN_KEY = "admin-key-for-tests"
READ_KEY = "read-key-for-tests"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
READ = {"Authorization": f"Bearer {READ_KEY}"}


class RecordingPublisher:
    """Stands in for Celery: remembers what would have been published, after commit."""

    def __init__(self) -> None:
        self.published: list[NodeRef] = []

    def __call__(self, refs: list[NodeRef]) -> None:
        self.published.extend(refs)


@pytest.fixture
def web_settings(tmp_path: Path) -> Settings:
    return Settings(
        DATABASE_URL=f"sqlite:///{tmp_path / 'web.db'}",
        DUALMCP_API_KEYS=f"admin:{ADMIN_KEY},read:{READ_KEY}",
        DUALMCP_MAX_BODY_BYTES=64 * 1024,
        CELERY_BROKER_URL="memory://",
    )


@pytest.fixture
def web_sessions(web_settings: Settings) -> Iterator[sessionmaker[Session]]:
    upgrade(web_settings.database_url)
    engine = make_engine(web_settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def app(
    web_settings: Settings, web_sessions: sessionmaker[Session], publisher: RecordingPublisher
) -> Flask:
    context = WebContext(settings=web_settings, sessions=web_sessions, publish=publisher)
    return create_app({"TESTING": True}, context=context)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
