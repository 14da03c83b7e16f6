"""Per-process resources of a worker: one database engine, one HTTP client and the agent
service, made after fork."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import httpx
from sqlalchemy.orm import Session, sessionmaker

from app.agents.service import AgentService, make_agent_service
from app.config import Settings, get_settings
from app.models import make_claims_engine, make_engine, make_session_factory
from app.safe_http import make_http_client
from app.tasks.dispatch import publish


@dataclass
class Runtime:
    settings: Settings
    sessions: sessionmaker[Session]
    http: httpx.Client
    #: Lease claims: autocommit, no fsync wait (None on SQLite: claims use `sessions`).
    claims: sessionmaker[Session] | None = None

    @cached_property
    def agents(self) -> AgentService:
        """Made on first use: a process that runs no LLM node never connects the cache. Its
        agents start workflow runs (tools) and publish them like any node does."""
        return make_agent_service(self.settings, self.sessions, self.http, publish=publish)


_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """The process's runtime, made on first use so a forked child never shares its parent's."""
    global _runtime
    if _runtime is None:
        settings = get_settings()
        _runtime = Runtime(
            settings=settings,
            sessions=make_session_factory(make_engine(settings.database_url)),
            http=make_http_client(settings),
            claims=_claims_sessions(settings.database_url),
        )
    return _runtime


def _claims_sessions(database_url: str) -> sessionmaker[Session] | None:
    engine = make_claims_engine(database_url)
    return make_session_factory(engine) if engine is not None else None


def set_runtime(runtime: Runtime | None) -> None:
    """Install a runtime (standalone mode, tests), or drop the current one (after fork)."""
    global _runtime
    _runtime = runtime
