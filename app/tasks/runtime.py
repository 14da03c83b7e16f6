"""Per-process resources of a worker: one database engine, one HTTP client, the dispatcher and
the agent service, made after fork from one Settings.

Standalone mode installs a runtime made from its own settings (`set_runtime(make_runtime(...))`);
a `celery -A app.tasks` worker, whose only configuration is the environment, gets one made from
`get_settings()` on first use in each process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

import httpx
from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from app.agents.service import AgentService, make_agent_service
from app.config import Settings, get_settings
from app.models import make_claims_engine, make_engine, make_session_factory
from app.safe_http import make_http_client
from app.tasks.celery_app import process_celery
from app.tasks.dispatch import Dispatcher
from app.workflows.agent_tools import WorkflowTools
from app.workflows.runs import NodeRef


@dataclass
class Runtime:
    settings: Settings
    sessions: sessionmaker[Session]
    http: httpx.Client
    #: Publishes node messages through the worker's Celery app.
    dispatcher: Dispatcher
    #: Lease claims: autocommit, no fsync wait (None on SQLite: claims use `sessions`).
    claims: sessionmaker[Session] | None = None

    @cached_property
    def agents(self) -> AgentService:
        """Made on first use: a process that runs no LLM node never connects the cache. Its
        agents start workflow runs (tools) and publish them like any node does."""
        tools = WorkflowTools(self.sessions, self.dispatcher.publish)
        return make_agent_service(self.settings, self.sessions, self.http, workflow_tools=tools)


def make_runtime(settings: Settings, celery: Celery) -> Runtime:
    """A worker's resources, made from `settings`, publishing through `celery`."""
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    sessions = make_session_factory(engine)
    return Runtime(
        settings=settings,
        sessions=sessions,
        http=make_http_client(settings),
        dispatcher=Dispatcher(celery, sessions),
        claims=_claims_sessions(settings),
    )


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The process's runtime: the one installed by `set_runtime`, else made on first use from
    the environment's settings (the worker entry point), so a forked child never shares its
    parent's."""
    global _runtime
    runtime = _runtime
    if runtime is None:
        # A threads-pool worker's first burst: one runtime (one engine, one HTTP client), not
        # one per thread that got there first.
        with _runtime_lock:
            runtime = _runtime or make_runtime(get_settings(), process_celery())
            _runtime = runtime
    return runtime


def publish(refs: list[NodeRef]) -> None:
    """Send node messages through the process's runtime, after the commit that made them
    pending (the tasks' and the agents' way to publish; the front end has its own)."""
    get_runtime().dispatcher.publish(refs)


def _claims_sessions(settings: Settings) -> sessionmaker[Session] | None:
    engine = make_claims_engine(settings.database_url, max_overflow=settings.db_max_overflow)
    return make_session_factory(engine) if engine is not None else None


def set_runtime(runtime: Runtime | None) -> None:
    """Install a runtime (standalone mode, tests), or drop the current one (after fork)."""
    global _runtime
    _runtime = runtime
