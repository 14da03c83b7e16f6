"""The Flask app with a recording publisher: fast tests of the HTTP contract.

On SQLite without any service, or, in a module marked `both_databases` (the run and trigger
contract), on SQLite and on the real PostgreSQL (tests/conftest.py `database_url`). The
end-to-end tests through gunicorn, a real worker and Redis live in tests/integration.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from app.agents.cache import LocalCache
from app.agents.replies import TaskOutcome, run_turn
from app.agents.service import AgentService
from app.config import Settings
from app.llm import LLMProviders
from app.models import make_engine, make_session_factory
from app.web import create_app
from app.web.context import WebContext
from app.workflows.runs import NodeRef

ADMIN_KEY = "admin-key-for-tests"
READ_KEY = "read-key-for-tests"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
READ = {"Authorization": f"Bearer {READ_KEY}"}
#: Fernet key for the credentials stored in these tests.
ENCRYPTION_KEY = "pTzQ0o9b2a5Jm3c1R7yW6vK4xL8nH0dF2gS5uE1iA3Y="


class RecordingPublisher:
    """Stands in for Celery: remembers what would have been published, after commit."""

    def __init__(self) -> None:
        self.published: list[NodeRef] = []

    def __call__(self, refs: list[NodeRef]) -> None:
        self.published.extend(refs)


class ThreadAgentTasks:
    """Stands in for Celery: each turn runs in a thread of its own, like on a worker."""

    def __init__(self, agents: AgentService) -> None:
        self.agents = agents
        self.submitted: list[tuple[str, str, str]] = []
        #: Set to hold turns back (a slow worker); they start when it is cleared.
        self.hold = threading.Event()
        self._done: dict[str, threading.Event] = {}
        self._results: dict[str, dict] = {}
        self._threads: list[threading.Thread] = []

    def submit(self, agent_id: str, session_id: str, message: str) -> str:
        task_id = str(uuid.uuid4())
        self.submitted.append((agent_id, session_id, message))
        self._done[task_id] = threading.Event()
        thread = threading.Thread(target=self._run, args=(task_id, agent_id, session_id, message))
        self._threads.append(thread)
        thread.start()
        return task_id

    def outcome(self, task_id: str, wait_s: float) -> TaskOutcome:
        done = self._done.get(task_id)
        if done is None:
            return TaskOutcome("unknown")
        if not done.wait(wait_s):
            return TaskOutcome("queued")
        return TaskOutcome("done", self._results[task_id])

    def release(self) -> None:
        self.hold.clear()
        for thread in self._threads:
            thread.join(timeout=10)

    def _run(self, task_id: str, agent_id: str, session_id: str, message: str) -> None:
        while self.hold.is_set():
            threading.Event().wait(0.01)
        self._results[task_id] = run_turn(self.agents, agent_id, session_id, message)
        self._done[task_id].set()


def web_test_settings(database_url: str, **overrides: Any) -> Settings:
    """The web tests' settings on `database_url`; `overrides` by environment name."""
    values: dict[str, Any] = {
        "DATABASE_URL": database_url,
        "DUALMCP_API_KEYS": f"admin:{ADMIN_KEY},read:{READ_KEY}",
        "DUALMCP_MAX_BODY_BYTES": 64 * 1024,
        "CELERY_BROKER_URL": "memory://",
        "DUALMCP_ENCRYPTION_KEY": ENCRYPTION_KEY,
    }
    return Settings(**{**values, **overrides})


@pytest.fixture
def web_settings(database_url: str) -> Settings:
    return web_test_settings(database_url)


@pytest.fixture
def web_sessions(web_settings: Settings) -> Iterator[sessionmaker[Session]]:
    """Sessions on the test's own migrated, empty database (`database_url`)."""
    engine = make_engine(web_settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def agent_service(
    web_settings: Settings, web_sessions: sessionmaker[Session]
) -> Iterator[AgentService]:
    """The agent service on the test's database and an in-process cache; agents use the echo
    provider."""
    service = AgentService(
        web_settings, web_sessions, LocalCache(), LLMProviders(web_settings, None)
    )
    yield service
    service.close()


@pytest.fixture
def agent_tasks(agent_service: AgentService) -> Iterator[ThreadAgentTasks]:
    tasks = ThreadAgentTasks(agent_service)
    yield tasks
    tasks.release()


@pytest.fixture
def app(
    web_settings: Settings,
    web_sessions: sessionmaker[Session],
    publisher: RecordingPublisher,
    agent_service: AgentService,
    agent_tasks: ThreadAgentTasks,
) -> Flask:
    context = WebContext(
        settings=web_settings,
        sessions=web_sessions,
        publish=publisher,
        agent_tasks=agent_tasks,
        agent_service=agent_service,
    )
    return create_app({"TESTING": True}, context=context)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def pg_client(migrated_postgres: str, pg_sessions: sessionmaker[Session]) -> FlaskClient:
    """The app on the real PostgreSQL (its one-statement paths), a read key, no broker."""
    settings = Settings(
        DATABASE_URL=migrated_postgres,
        CELERY_BROKER_URL="memory://",
        DUALMCP_API_KEYS=f"read:{READ_KEY}",
    )
    context = WebContext(settings=settings, sessions=pg_sessions, publish=RecordingPublisher())
    return create_app({"TESTING": True}, context=context).test_client()
